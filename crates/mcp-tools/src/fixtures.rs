//! The official MCP conformance suite's fixture tools, offered only with
//! `--conformance-fixtures`: each returns exactly what the suite's server scenario expects
//! (its name, its content types, its log messages and progress), so the suite can check
//! the protocol rather than this server's own tools.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mcp_protocol::{
    CompleteParams, CompleteResult, Completion, Content, ErrorObject, GetPromptParams,
    GetPromptResult, Prompt, PromptArgument, PromptMessage, Resource, ResourceContents,
    ResourceTemplate,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{ProgressUpdate, Provider, RegistryError, Tool, ToolContext, ToolError, ToolRegistry};

/// The suite's resources, prompts and completion, as a [`Provider`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Fixtures;

impl Provider for Fixtures {
    fn resources(&self) -> Vec<Resource> {
        resources()
    }

    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        templates()
    }

    fn read(&self, uri: &str) -> Option<ResourceContents> {
        read(uri)
    }

    fn offers_prompts(&self) -> bool {
        true
    }

    fn prompts(&self) -> Vec<Prompt> {
        prompts()
    }

    fn get_prompt(&self, params: &GetPromptParams) -> Option<Result<GetPromptResult, ErrorObject>> {
        Some(get_prompt(params))
    }

    fn render_prompt(
        &self,
        params: GetPromptParams,
        client: crate::Client,
    ) -> Option<crate::PromptFuture> {
        if params.name == rounds::ASKING_PROMPT {
            return Some(rounds::asking_prompt(client));
        }
        Some(Box::pin(std::future::ready(get_prompt(&params))))
    }

    fn offers_completions(&self) -> bool {
        true
    }

    fn complete(&self, params: &CompleteParams) -> Option<CompleteResult> {
        Some(complete(params))
    }
}

/// Registers every fixture tool; the resources, prompts and completion are [`Fixtures`].
pub fn register(registry: &mut ToolRegistry) -> Result<(), RegistryError> {
    for fixed in FIXED {
        registry.register(fixed)?;
    }
    registry.register(WithLogging)?;
    registry.register(WithProgress)?;
    registry.register(ErrorHandling)?;
    registry.register(JsonSchema202012)?;
    registry.register(Sampling)?;
    for elicit in ELICITATIONS {
        registry.register(elicit)?;
    }
    rounds::register(registry)?;
    tasks::register(registry)
}

/// The resource a client may subscribe to (it never changes).
pub const WATCHED_RESOURCE: &str = "test://watched-resource";
const STATIC_TEXT: &str = "test://static-text";
const STATIC_BINARY: &str = "test://static-binary";
const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";

/// The suite's fixture resources.
fn resources() -> Vec<Resource> {
    let resource = |uri: &str, name: &str, description: &str, mime: &str| Resource {
        uri: uri.to_owned(),
        name: name.to_owned(),
        title: None,
        description: Some(description.to_owned()),
        mime_type: Some(mime.to_owned()),
    };
    vec![
        resource(
            STATIC_TEXT,
            "static-text",
            "A static text resource (conformance fixture).",
            "text/plain",
        ),
        resource(
            STATIC_BINARY,
            "static-binary",
            "A 1x1 red PNG (conformance fixture).",
            "image/png",
        ),
        resource(
            WATCHED_RESOURCE,
            "watched-resource",
            "A resource to subscribe to (conformance fixture).",
            "text/plain",
        ),
    ]
}

/// The suite's fixture resource template.
fn templates() -> Vec<ResourceTemplate> {
    vec![ResourceTemplate {
        uri_template: format!("{TEMPLATE_PREFIX}{{id}}{TEMPLATE_SUFFIX}"),
        name: "template-data".to_owned(),
        description: Some("JSON data for any id (conformance fixture).".to_owned()),
        mime_type: Some("application/json".to_owned()),
    }]
}

/// Reads a fixture resource; `None` when `uri` names none.
fn read(uri: &str) -> Option<ResourceContents> {
    let text = |mime: &str, text: String| ResourceContents {
        uri: uri.to_owned(),
        mime_type: Some(mime.to_owned()),
        text: Some(text),
        blob: None,
    };
    match uri {
        STATIC_TEXT => Some(text(
            "text/plain",
            "This is the content of the static text resource.".to_owned(),
        )),
        WATCHED_RESOURCE => Some(text("text/plain", "Watched resource content.".to_owned())),
        STATIC_BINARY => {
            let Content::Image { data, mime_type } = red_pixel() else {
                return None;
            };
            Some(ResourceContents {
                uri: uri.to_owned(),
                mime_type: Some(mime_type),
                text: None,
                blob: Some(data),
            })
        }
        _ => {
            let id = uri
                .strip_prefix(TEMPLATE_PREFIX)?
                .strip_suffix(TEMPLATE_SUFFIX)?;
            (!id.is_empty() && !id.contains('/')).then(|| {
                text(
                    "application/json",
                    json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")})
                        .to_string(),
                )
            })
        }
    }
}

/// The suite's fixture prompts.
fn prompts() -> Vec<Prompt> {
    let argument = |name: &str, description: &str| PromptArgument {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        required: Some(true),
    };
    let prompt = |name: &str, description: &str, arguments: Vec<PromptArgument>| Prompt {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        arguments,
    };
    vec![
        prompt(
            "test_simple_prompt",
            "A prompt without arguments (conformance fixture).",
            vec![],
        ),
        prompt(
            "test_prompt_with_arguments",
            "A prompt with two arguments (conformance fixture).",
            vec![
                argument("arg1", "First test argument"),
                argument("arg2", "Second test argument"),
            ],
        ),
        prompt(
            "test_prompt_with_embedded_resource",
            "A prompt that embeds a resource (conformance fixture).",
            vec![argument("resourceUri", "URI of the resource to embed")],
        ),
        prompt(
            "test_prompt_with_image",
            "A prompt with an image (conformance fixture).",
            vec![],
        ),
        prompt(
            rounds::ASKING_PROMPT,
            "A prompt that asks the user for its context first (elicitation, key `user_context`; conformance fixture).",
            vec![],
        ),
    ]
}

/// Renders a fixture prompt; an invalid-params error for an unknown prompt or a missing
/// argument.
fn get_prompt(params: &GetPromptParams) -> Result<GetPromptResult, ErrorObject> {
    let argument = |name: &str| {
        params
            .arguments
            .get(name)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                ErrorObject::invalid_params(format!(
                    "prompt `{}` needs the string argument `{name}`",
                    params.name
                ))
            })
    };
    let user = |content: Content| PromptMessage {
        role: "user".to_owned(),
        content,
    };
    let messages = match params.name.as_str() {
        "test_simple_prompt" => vec![user(Content::text("This is a simple prompt for testing."))],
        "test_prompt_with_arguments" => vec![user(Content::text(format!(
            "Prompt with arguments: arg1='{}', arg2='{}'",
            argument("arg1")?,
            argument("arg2")?
        )))],
        "test_prompt_with_embedded_resource" => vec![
            user(Content::Resource {
                resource: ResourceContents {
                    uri: argument("resourceUri")?.to_owned(),
                    mime_type: Some("text/plain".to_owned()),
                    text: Some("Embedded resource content for testing.".to_owned()),
                    blob: None,
                },
            }),
            user(Content::text("Please process the embedded resource above.")),
        ],
        "test_prompt_with_image" => vec![
            user(red_pixel()),
            user(Content::text("Please analyze the image above.")),
        ],
        other => {
            return Err(ErrorObject::invalid_params(format!(
                "unknown prompt `{}`: see prompts/list",
                mcp_protocol::shorten(other, 80)
            )));
        }
    };
    Ok(GetPromptResult {
        description: None,
        messages,
    })
}

/// Completes a fixture prompt's argument: the words that start with what was typed.
fn complete(params: &CompleteParams) -> CompleteResult {
    const WORDS: [&str; 6] = ["paris", "park", "party", "test", "testing", "tested"];
    let typed = params.argument.value.to_lowercase();
    let values: Vec<String> = WORDS
        .iter()
        .filter(|w| w.starts_with(&typed))
        .map(|w| (*w).to_owned())
        .collect();
    CompleteResult {
        completion: Completion {
            total: Some(values.len() as u64),
            has_more: Some(false),
            values,
        },
    }
}

/// No arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoParams {}

/// A tool that always returns the same content.
#[derive(Clone, Copy)]
struct Fixed {
    name: &'static str,
    description: &'static str,
    content: fn() -> Vec<Content>,
}

const FIXED: [Fixed; 5] = [
    Fixed {
        name: "test_simple_text",
        description: "Returns a simple text response (conformance fixture).",
        content: || vec![Content::text("This is a simple text response for testing.")],
    },
    Fixed {
        name: "test_image_content",
        description: "Returns a 1x1 red PNG image (conformance fixture).",
        content: || vec![red_pixel()],
    },
    Fixed {
        name: "test_audio_content",
        description: "Returns a short WAV sound (conformance fixture).",
        content: || vec![silence()],
    },
    Fixed {
        name: "test_embedded_resource",
        description: "Returns an embedded text resource (conformance fixture).",
        content: || {
            vec![Content::Resource {
                resource: ResourceContents {
                    uri: "test://embedded-resource".to_owned(),
                    mime_type: Some("text/plain".to_owned()),
                    text: Some("This is an embedded resource content.".to_owned()),
                    blob: None,
                },
            }]
        },
    },
    Fixed {
        name: "test_multiple_content_types",
        description: "Returns text, an image and an embedded resource (conformance fixture).",
        content: || {
            vec![
                Content::text("Multiple content types test:"),
                red_pixel(),
                Content::Resource {
                    resource: ResourceContents {
                        uri: "test://mixed-content-resource".to_owned(),
                        mime_type: Some("application/json".to_owned()),
                        text: Some(json!({"test": "data", "value": 123}).to_string()),
                        blob: None,
                    },
                },
            ]
        },
    },
];

/// A 1x1 red PNG.
fn red_pixel() -> Content {
    let image = image::RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 0]));
    let mut png = std::io::Cursor::new(Vec::new());
    let data = match image.write_to(&mut png, image::ImageFormat::Png) {
        Ok(()) => BASE64.encode(png.into_inner()),
        Err(e) => return Content::text(format!("cannot encode the image: {e}")),
    };
    Content::Image {
        data,
        mime_type: "image/png".to_owned(),
    }
}

/// One millisecond of 8 kHz, 8-bit mono silence as a WAV file.
fn silence() -> Content {
    let samples = [0x80u8; 8];
    let mut wav = Vec::with_capacity(44 + samples.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // the fmt chunk's size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes()); // samples per second
    wav.extend_from_slice(&8000u32.to_le_bytes()); // bytes per second
    wav.extend_from_slice(&1u16.to_le_bytes()); // bytes per frame
    wav.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    wav.extend_from_slice(&samples);
    Content::Audio {
        data: BASE64.encode(wav),
        mime_type: "audio/wav".to_owned(),
    }
}

/// The associated types and output of a fixture whose answer is only content.
macro_rules! content_only {
    () => {
        content_only!(NoParams);
    };
    ($params:ty) => {
        type Params = $params;
        type Output = Vec<Content>;

        fn structured(&self) -> bool {
            false
        }

        fn content(&self, output: &Self::Output) -> Vec<Content> {
            output.clone()
        }
    };
}

impl Tool for Fixed {
    content_only!();

    fn name(&self) -> &str {
        self.name
    }

    fn description(&self) -> &str {
        self.description
    }

    async fn call(&self, _: NoParams, _: ToolContext) -> Result<Vec<Content>, ToolError> {
        Ok((self.content)())
    }
}

/// Waits `duration`, or less when the call is cancelled; false when it was.
async fn pause(ctx: &ToolContext, duration: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = ctx.cancel.cancelled() => false,
    }
}

/// Sends three log messages at `info`, about 50 ms apart.
struct WithLogging;

impl Tool for WithLogging {
    content_only!();

    fn name(&self) -> &str {
        "test_tool_with_logging"
    }

    fn description(&self) -> &str {
        "Sends three log messages at info level while it runs (conformance fixture)."
    }

    async fn call(&self, _: NoParams, ctx: ToolContext) -> Result<Vec<Content>, ToolError> {
        ctx.log.info("Tool execution started");
        if !pause(&ctx, Duration::from_millis(50)).await {
            return Err(ToolError::Cancelled);
        }
        ctx.log.info("Tool processing data");
        if !pause(&ctx, Duration::from_millis(50)).await {
            return Err(ToolError::Cancelled);
        }
        ctx.log.info("Tool execution completed");
        Ok(vec![Content::text(
            "Tool with logging executed successfully",
        )])
    }
}

/// Reports progress 0, 50 and 100 of 100.
struct WithProgress;

impl Tool for WithProgress {
    content_only!();

    fn name(&self) -> &str {
        "test_tool_with_progress"
    }

    fn description(&self) -> &str {
        "Reports progress 0, 50 and 100 of 100 about 50 ms apart (conformance fixture)."
    }

    async fn call(&self, _: NoParams, mut ctx: ToolContext) -> Result<Vec<Content>, ToolError> {
        let mut progress = std::mem::replace(&mut ctx.progress, crate::Progress::none());
        for step in [0.0, 50.0, 100.0] {
            if step > 0.0 {
                // About 50 ms, and at least the server's progress interval, so that no
                // report is throttled away.
                if !pause(&ctx, Duration::from_millis(50)).await {
                    return Err(ToolError::Cancelled);
                }
                while progress.is_requested() && !progress.is_due() {
                    if !pause(&ctx, Duration::from_millis(10)).await {
                        return Err(ToolError::Cancelled);
                    }
                }
            }
            progress.report(ProgressUpdate {
                progress: step,
                total: Some(100.0),
                message: None,
            });
        }
        Ok(vec![Content::text(
            "Tool with progress executed successfully",
        )])
    }
}

/// Always fails.
struct ErrorHandling;

impl Tool for ErrorHandling {
    content_only!();

    fn name(&self) -> &str {
        "test_error_handling"
    }

    fn description(&self) -> &str {
        "Always fails, with isError set (conformance fixture)."
    }

    async fn call(&self, _: NoParams, _: ToolContext) -> Result<Vec<Content>, ToolError> {
        Err(ToolError::Failed(
            "This tool intentionally returns an error for testing".to_owned(),
        ))
    }
}

/// Advertises a JSON Schema 2020-12 input schema with `$schema`, `$defs` and
/// `additionalProperties`, which must reach the client unchanged.
struct JsonSchema202012;

impl Tool for JsonSchema202012 {
    content_only!(Map<String, Value>);

    fn name(&self) -> &str {
        "json_schema_2020_12_tool"
    }

    fn description(&self) -> &str {
        "Has a JSON Schema 2020-12 input schema with $defs, composition, conditionals and an anchor (conformance fixture, SEP-1613 and SEP-2106)."
    }

    fn input_schema(&self) -> Option<Value> {
        // The suite's canonical schema: composition, conditional and reference keywords
        // (SEP-2106) must reach the client as they are.
        Some(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {
                    "$anchor": "addressDef",
                    "type": "object",
                    "properties": {
                        "street": {"type": "string"},
                        "city": {"type": "string"}
                    }
                }
            },
            "properties": {
                "name": {"type": "string"},
                "address": {"$ref": "#/$defs/address"},
                "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                "phone": {"type": "string"},
                "email": {"type": "string"}
            },
            "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
            "if": {
                "properties": {"contactMethod": {"const": "phone"}},
                "required": ["contactMethod"]
            },
            "then": {"required": ["phone"]},
            "else": {"required": ["email"]},
            "additionalProperties": false
        }))
    }

    async fn call(
        &self,
        arguments: Map<String, Value>,
        _: ToolContext,
    ) -> Result<Vec<Content>, ToolError> {
        Ok(vec![Content::text(format!(
            "Received: {}",
            Value::Object(arguments)
        ))])
    }
}

/// The argument of `test_sampling`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct SamplingParams {
    /// The prompt to send to the client's language model.
    prompt: String,
}

/// Asks the client's language model (`sampling/createMessage`).
struct Sampling;

impl Tool for Sampling {
    content_only!(SamplingParams);

    fn name(&self) -> &str {
        "test_sampling"
    }

    fn description(&self) -> &str {
        "Asks the client's language model to answer `prompt` (sampling; conformance fixture)."
    }

    async fn call(&self, p: SamplingParams, ctx: ToolContext) -> Result<Vec<Content>, ToolError> {
        let params = json!({
            "messages": [{"role": "user", "content": {"type": "text", "text": p.prompt}}],
            "maxTokens": 100,
        });
        let answer = ctx
            .client
            .request("sampling", "sampling/createMessage", params)
            .await?;
        let text = answer
            .get("content")
            .and_then(|c| c.get("text"))
            .and_then(Value::as_str)
            .map_or_else(|| answer.to_string(), str::to_owned);
        Ok(vec![Content::text(format!("LLM response: {text}"))])
    }
}

/// The argument of `test_elicitation`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ElicitParams {
    /// The message to show the user.
    #[serde(default)]
    message: Option<String>,
}

/// A tool that asks the client's user for input (`elicitation/create`) with a fixed schema.
#[derive(Clone, Copy)]
struct Elicit {
    name: &'static str,
    description: &'static str,
    /// The message when the caller gives none.
    message: &'static str,
    schema: fn() -> Value,
    /// How the answer is reported.
    prefix: &'static str,
}

const ELICITATIONS: [Elicit; 3] = [
    Elicit {
        name: "test_elicitation",
        description: "Asks the user for a username and an email (elicitation; conformance fixture).",
        message: "Please provide your information",
        schema: || {
            json!({
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"}
                },
                "required": ["username", "email"]
            })
        },
        prefix: "User response",
    },
    Elicit {
        name: "test_elicitation_sep1034_defaults",
        description: "Asks the user with a default for every primitive type (SEP-1034; conformance fixture).",
        message: "Please review and update the form fields with defaults",
        schema: || {
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "User name", "default": "John Doe"},
                    "age": {"type": "integer", "description": "User age", "default": 30},
                    "score": {"type": "number", "description": "User score", "default": 95.5},
                    "status": {
                        "type": "string",
                        "description": "User status",
                        "enum": ["active", "inactive", "pending"],
                        "default": "active"
                    },
                    "verified": {"type": "boolean", "description": "Verification status", "default": true}
                }
            })
        },
        prefix: "Elicitation completed",
    },
    Elicit {
        name: "test_elicitation_sep1330_enums",
        description: "Asks the user with every kind of enum (SEP-1330; conformance fixture).",
        message: "Please select options from the enum fields",
        schema: || {
            json!({
                "type": "object",
                "properties": {
                    "untitledSingle": {
                        "type": "string",
                        "description": "Select one option",
                        "enum": ["option1", "option2", "option3"]
                    },
                    "titledSingle": {
                        "type": "string",
                        "description": "Select one option with titles",
                        "oneOf": [
                            {"const": "value1", "title": "First Option"},
                            {"const": "value2", "title": "Second Option"},
                            {"const": "value3", "title": "Third Option"}
                        ]
                    },
                    "legacyEnum": {
                        "type": "string",
                        "description": "Select one option (legacy)",
                        "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"]
                    },
                    "untitledMulti": {
                        "type": "array",
                        "description": "Select multiple options",
                        "items": {"type": "string", "enum": ["option1", "option2", "option3"]}
                    },
                    "titledMulti": {
                        "type": "array",
                        "description": "Select multiple options with titles",
                        "items": {
                            "anyOf": [
                                {"const": "value1", "title": "First Choice"},
                                {"const": "value2", "title": "Second Choice"},
                                {"const": "value3", "title": "Third Choice"}
                            ]
                        }
                    }
                }
            })
        },
        prefix: "Elicitation completed",
    },
];

impl Tool for Elicit {
    content_only!(ElicitParams);

    fn name(&self) -> &str {
        self.name
    }

    fn description(&self) -> &str {
        self.description
    }

    async fn call(&self, p: ElicitParams, ctx: ToolContext) -> Result<Vec<Content>, ToolError> {
        let params = json!({
            "message": p.message.as_deref().unwrap_or(self.message),
            "requestedSchema": (self.schema)(),
        });
        let answer = ctx
            .client
            .request("elicitation", "elicitation/create", params)
            .await?;
        let action = answer
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let content = answer.get("content").cloned().unwrap_or(Value::Null);
        Ok(vec![Content::text(format!(
            "{}: action={action}, content={content}",
            self.prefix
        ))])
    }
}

mod rounds;
mod tasks;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_is_one_red_pixel_and_the_sound_a_wav_file() {
        let Content::Image { data, mime_type } = red_pixel() else {
            panic!("not an image");
        };
        assert_eq!(mime_type, "image/png");
        let png = BASE64.decode(data).unwrap();
        let image = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (1, 1));
        assert_eq!(image.get_pixel(0, 0).0, [255, 0, 0]);
        let Content::Audio { data, mime_type } = silence() else {
            panic!("not audio");
        };
        assert_eq!(mime_type, "audio/wav");
        let wav = BASE64.decode(data).unwrap();
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[8..12], b"WAVE");
        assert_eq!(
            u32::from_le_bytes(wav[4..8].try_into().unwrap()) as usize,
            wav.len() - 8
        );
    }
}
