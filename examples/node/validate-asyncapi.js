"use strict";
/**
 * Validate contract/asyncapi.json.
 *
 *   node validate-asyncapi.js [path/to/asyncapi.json]
 *
 * Three checks, each of which can fail on its own: the document against the
 * official AsyncAPI 3.0.0 JSON Schema (@asyncapi/specs); every $ref in it
 * resolves, inside the document or to a schema file beside it; and every
 * message's headers and payload schema compiles (draft 2020-12, with the
 * contract's schemas loaded). Prints "ok" or the problems; exit status 1 on
 * any problem.
 */
const fs = require("node:fs");
const path = require("node:path");
const Ajv = require("ajv");
const Ajv2020 = require("ajv/dist/2020");
const addFormats = require("ajv-formats");
const specs = require("@asyncapi/specs");

const file = path.resolve(process.argv[2] || path.join(__dirname, "..", "..", "contract", "asyncapi.json"));
const dir = path.dirname(file);
const doc = JSON.parse(fs.readFileSync(file, "utf8"));

/** Problems of the document as AsyncAPI (the spec's schema embeds its own meta-schema, hence meta: false). */
function specProblems() {
  const ajv = new Ajv({ strict: false, allErrors: true, meta: false, validateSchema: false });
  addFormats(ajv);
  const validate = ajv.compile(specs.schemas[doc.asyncapi]);
  return validate(doc) ? [] : validate.errors.map((e) => `AsyncAPI ${doc.asyncapi}: ${e.instancePath} ${e.message}`);
}

function* refs(value) {
  if (Array.isArray(value)) for (const item of value) yield* refs(item);
  else if (value && typeof value === "object") {
    if (typeof value.$ref === "string") yield value.$ref;
    for (const item of Object.values(value)) yield* refs(item);
  }
}

function pointer(target, ref) {
  return ref.slice(2).split("/").reduce((node, part) => (node === undefined ? undefined
    : node[part.replace(/~1/g, "/").replace(/~0/g, "~")]), target);
}

/** $refs that point at nothing: "#/..." inside the document, anything else at a file beside it. */
function refProblems() {
  return [...new Set(refs(doc))].filter((ref) => (ref.startsWith("#/")
    ? pointer(doc, ref) === undefined
    : !fs.existsSync(path.join(dir, ref.split("#")[0])))).map((ref) => `unresolved $ref ${ref}`);
}

/** Message schemas that do not compile against the contract's schemas. */
function schemaProblems() {
  const ajv = new Ajv2020({ allowUnionTypes: true });
  const contractFiles = (sub) => fs.readdirSync(path.join(dir, sub)).filter((f) => f.endsWith(".schema.json"))
    .map((f) => path.join(dir, sub, f));
  const files = [path.join(dir, "common.schema.json"), ...contractFiles("arguments"), ...contractFiles("results")];
  for (const schemaFile of files) ajv.addSchema(JSON.parse(fs.readFileSync(schemaFile, "utf8")));
  const base = JSON.parse(fs.readFileSync(path.join(dir, "common.schema.json"), "utf8")).$id;
  const problems = [];
  for (const [key, message] of Object.entries(doc.components.messages)) {
    for (const part of ["headers", "payload"]) {
      if (!message[part]) continue;
      try {
        ajv.compile({ ...message[part].schema, $id: new URL(`asyncapi-${key}-${part}.json`, base).href });
      } catch (error) {
        problems.push(`${key} ${part}: ${error.message}`);
      }
    }
  }
  return problems;
}

const problems = [...specProblems(), ...refProblems(), ...schemaProblems()];
console.log(problems.length ? problems.join("\n") : "ok");
process.exitCode = problems.length ? 1 : 0;
