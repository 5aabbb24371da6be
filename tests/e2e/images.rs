//! `process_images` on real PNG and JPEG files, corrupt ones among them, and paths that try
//! to leave the data root.

use std::path::Path;

use mcp_server::Config;
use mcp_tools::{DataRoot, ToolsConfig};
use serde_json::{Value, json};

use crate::support::{Client, TestServer};

/// Writes `count` small images, every `corrupt_every`-th one corrupt (alternately truncated
/// and random bytes under an image name), PNG and JPEG alternating. Returns the corrupt names.
fn generate(dir: &Path, count: usize, corrupt_every: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut corrupt = Vec::new();
    for i in 0..count {
        let jpeg = i % 2 == 0;
        let name = format!("img{i:04}.{}", if jpeg { "jpg" } else { "png" });
        let path = dir.join(&name);
        let image = image::RgbImage::from_fn(48 + (i % 7) as u32, 32, |x, y| {
            image::Rgb([(x * 5) as u8, (y * 7) as u8, (i % 251) as u8])
        });
        let format = if jpeg {
            image::ImageFormat::Jpeg
        } else {
            image::ImageFormat::Png
        };
        image.save_with_format(&path, format).unwrap();
        if (i + 1) % corrupt_every == 0 {
            if corrupt.len() % 2 == 0 {
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
            } else {
                std::fs::write(
                    &path,
                    b"this is not an image at all, whatever its name says",
                )
                .unwrap();
            }
            corrupt.push(name);
        }
    }
    corrupt
}

async fn server_with_root(root: &Path) -> TestServer {
    let config = Config {
        tools: ToolsConfig::with_data_root(DataRoot::new(root).unwrap(), 2).unwrap(),
        ..Config::default()
    };
    TestServer::with_config(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnails_for_a_thousand_images_with_twenty_corrupt() {
    let root = tempfile::tempdir().unwrap();
    let corrupt = generate(&root.path().join("photos"), 1000, 50);
    assert_eq!(corrupt.len(), 20);
    let server = server_with_root(root.path()).await;
    let mut client = Client::initialized(&server).await;
    let request = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "name":"process_images",
        "arguments":{"input_dir":"photos","output_dir":"thumbs","max_size":16},
        "_meta":{"progressToken":"img"}}});
    client.send(request).await;
    let mut progress = Vec::new();
    let response = loop {
        let message = client.recv().await;
        if message["method"] == "notifications/progress" {
            progress.push(message["params"]["progress"].as_f64().unwrap());
        } else {
            break message;
        }
    };
    assert_eq!(response["id"], 1);
    let summary = &response["result"]["structuredContent"];
    assert_eq!(summary["total"], 1000, "{response}");
    assert_eq!(summary["thumbnails"], 980);
    assert_eq!(summary["failed"], 20);
    assert_eq!(summary["errorsFile"], "thumbs/errors.json");
    assert_eq!(progress.last(), Some(&1000.0));
    assert!(progress.windows(2).all(|w| w[0] < w[1]));
    let text = response["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("980 thumbnails written to thumbs, 20 failed"),
        "{text}"
    );

    let thumbs = root.path().join("thumbs");
    let written: Vec<_> = std::fs::read_dir(&thumbs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "errors.json")
        .collect();
    assert_eq!(written.len(), 980);
    for name in &written {
        let thumb = image::open(thumbs.join(name)).unwrap();
        assert!(thumb.width() <= 16 && thumb.height() <= 16, "{name}");
        assert!(!corrupt.contains(name));
    }
    let errors: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(thumbs.join("errors.json")).unwrap())
            .unwrap();
    let failed: Vec<&str> = errors.iter().map(|e| e["file"].as_str().unwrap()).collect();
    assert_eq!(
        failed,
        corrupt.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(
        errors
            .iter()
            .all(|e| !e["error"].as_str().unwrap().is_empty())
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn paths_outside_the_data_root_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    generate(outside.path(), 3, 100);
    let root = tempfile::tempdir().unwrap();
    generate(&root.path().join("in"), 3, 100);
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).unwrap();
    let server = server_with_root(root.path()).await;
    let mut client = Client::initialized(&server).await;
    let outside_str = outside.path().display().to_string();
    let cases = [
        (
            json!({"input_dir": "../x", "output_dir": "out"}),
            "contains `..`",
        ),
        (
            json!({"input_dir": "in/../../x", "output_dir": "out"}),
            "contains `..`",
        ),
        (
            json!({"input_dir": outside_str, "output_dir": "out"}),
            "outside the data root",
        ),
        (
            json!({"input_dir": "in", "output_dir": "/tmp/elsewhere"}),
            "outside the data root",
        ),
        (
            json!({"input_dir": "escape", "output_dir": "out"}),
            "symbolic link",
        ),
        (
            json!({"input_dir": "in", "output_dir": "escape/sub"}),
            "symbolic link",
        ),
        (
            json!({"input_dir": "missing", "output_dir": "out"}),
            "does not exist",
        ),
        (
            json!({"input_dir": "in", "output_dir": "in"}),
            "must differ",
        ),
        (json!({"input_dir": "", "output_dir": "out"}), "is empty"),
    ];
    for (i, (args, mentions)) in cases.into_iter().enumerate() {
        let result = client.call(i as i64, "process_images", args.clone()).await;
        assert_eq!(result["isError"], true, "{args}: {result}");
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains(mentions),
            "{args}: `{text}` does not mention `{mentions}`"
        );
    }
    // Nothing was written outside the root.
    assert!(!outside.path().join("sub").exists());
    assert!(!Path::new("/tmp/elsewhere").exists());
    // And a proper call works.
    let result = client
        .call(
            99,
            "process_images",
            json!({"input_dir": "in", "output_dir": "nested/out"}),
        )
        .await;
    assert_eq!(result["structuredContent"]["thumbnails"], 3, "{result}");
    drop(client);
    server.shutdown().await;
}
