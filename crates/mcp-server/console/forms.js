// A form for a tool's input, built from its JSON Schema: one field per property, with its
// type, required mark, enum choices, default, bounds, and a message for each invalid value.

let counter = 0;

function typeOf(schema) {
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
  if (Array.isArray(schema.enum)) return 'enum';
  return type || 'json';
}

function field(name, schema, required) {
  const id = `field-${++counter}`;
  const kind = typeOf(schema);
  const wrapper = document.createElement('div');
  wrapper.className = 'field';
  const label = document.createElement('label');
  label.htmlFor = id;
  label.textContent = required ? `${name} *` : name;
  let input;
  if (kind === 'enum') {
    input = document.createElement('select');
    if (!required) input.append(new Option('', ''));
    for (const choice of schema.enum) input.append(new Option(String(choice), JSON.stringify(choice)));
    if (schema.default !== undefined) input.value = JSON.stringify(schema.default);
  } else if (kind === 'boolean') {
    input = document.createElement('input');
    input.type = 'checkbox';
    input.checked = schema.default === true;
  } else if (kind === 'array' || kind === 'object' || kind === 'json') {
    input = document.createElement('textarea');
    input.rows = 3;
    input.placeholder = kind === 'array' ? '[ … ] (JSON)' : '{ … } (JSON)';
    if (schema.default !== undefined) input.value = JSON.stringify(schema.default);
  } else {
    input = document.createElement('input');
    if (kind === 'number' || kind === 'integer') {
      input.type = 'number';
      input.step = kind === 'integer' ? '1' : 'any';
      if (schema.minimum !== undefined) input.min = schema.minimum;
      if (schema.maximum !== undefined) input.max = schema.maximum;
    } else {
      input.type = 'text';
    }
    if (schema.default !== undefined) input.value = String(schema.default);
  }
  input.id = id;
  input.name = name;
  if (required) input.setAttribute('aria-required', 'true');
  const help = document.createElement('span');
  help.className = 'help';
  help.id = `${id}-help`;
  help.textContent = (schema.description || '').split('\n')[0];
  const error = document.createElement('span');
  error.className = 'error';
  error.id = `${id}-error`;
  error.setAttribute('aria-live', 'polite');
  input.setAttribute('aria-describedby', `${help.id} ${error.id}`);
  wrapper.append(label, input, help, error);

  /** The value, or throws the message to show. */
  const read = () => {
    if (kind === 'boolean') return input.checked;
    const text = input.value.trim();
    if (text === '') {
      if (required) throw new Error('required');
      return undefined;
    }
    if (kind === 'enum') return JSON.parse(text);
    if (kind === 'number' || kind === 'integer') {
      const number = Number(text);
      if (!Number.isFinite(number)) throw new Error('must be a number');
      if (kind === 'integer' && !Number.isInteger(number)) throw new Error('must be a whole number');
      if (schema.minimum !== undefined && number < schema.minimum) throw new Error(`must be at least ${schema.minimum}`);
      if (schema.maximum !== undefined && number > schema.maximum) throw new Error(`must be at most ${schema.maximum}`);
      return number;
    }
    if (kind === 'array' || kind === 'object' || kind === 'json') {
      let value;
      try {
        value = JSON.parse(text);
      } catch {
        throw new Error('must be JSON');
      }
      if (kind === 'array' && !Array.isArray(value)) throw new Error('must be a JSON array');
      if (kind === 'object' && (value === null || typeof value !== 'object' || Array.isArray(value))) throw new Error('must be a JSON object');
      return value;
    }
    if (schema.minLength !== undefined && text.length < schema.minLength) throw new Error(`must be at least ${schema.minLength} characters`);
    return input.value;
  };
  return { wrapper, input, error, read, name };
}

/**
 * A form for `tool`; `onSubmit(arguments)` is called with valid arguments only. Invalid
 * fields show their message and are marked `aria-invalid`.
 */
export function toolForm(tool, onSubmit) {
  const form = document.createElement('form');
  form.noValidate = true;
  form.id = 'tool-form';
  form.dataset.tool = tool.name;
  const title = document.createElement('h3');
  title.textContent = tool.title || tool.name;
  const description = document.createElement('p');
  description.className = 'hint';
  description.textContent = tool.description || '';
  form.append(title, description);
  const schema = tool.inputSchema || {};
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, property]) => field(name, property, required.has(name)));
  for (const f of fields) form.append(f.wrapper);
  const run = document.createElement('button');
  run.type = 'submit';
  run.id = 'run-button';
  run.textContent = `Run ${tool.name}`;
  form.append(run);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const args = {};
    let firstInvalid = null;
    for (const f of fields) {
      try {
        const value = f.read();
        if (value !== undefined) args[f.name] = value;
        f.error.textContent = '';
        f.input.removeAttribute('aria-invalid');
      } catch (e) {
        f.error.textContent = `${f.name} ${e.message}`;
        f.input.setAttribute('aria-invalid', 'true');
        firstInvalid ??= f.input;
      }
    }
    if (firstInvalid) {
      firstInvalid.focus();
      return;
    }
    onSubmit(args);
  });
  return form;
}
