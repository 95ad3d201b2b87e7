"use strict";
/**
 * The callqueue task contract (the JSON Schemas in contract/), compiled with Ajv.
 *
 * contract/tasks.json names each task's queue, parameter order and the result
 * shapes it may answer with; checkResult() throws ContractViolation for any
 * answer that is none of them, so a change on the worker side shows up here
 * instead of as an undefined field somewhere later.
 */
const fs = require("node:fs");
const path = require("node:path");
const Ajv2020 = require("ajv/dist/2020");

const CONTRACT_DIR = process.env.CALLQUEUE_CONTRACT_DIR || path.resolve(__dirname, "..", "..", "contract");

class ContractViolation extends Error {
  constructor(task, errors, value) {
    super(`${task}: answer outside contract/: ${JSON.stringify(errors)} in ${JSON.stringify(value).slice(0, 500)}`);
    this.name = "ContractViolation";
  }
}

/** Every *.schema.json under dir, recursively. */
function schemaFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return schemaFiles(full);
    return entry.name.endsWith(".schema.json") ? [full] : [];
  });
}

/** Load contract/ once: the task index and one compiled answer check per task. */
function loadContract(dir = CONTRACT_DIR) {
  const ajv = new Ajv2020({ allErrors: false, allowUnionTypes: true });
  const ids = {};
  for (const file of schemaFiles(dir)) {
    const schema = JSON.parse(fs.readFileSync(file, "utf8"));
    ajv.addSchema(schema);
    ids[path.relative(dir, file).split(path.sep).join("/")] = schema.$id;
  }
  const tasks = JSON.parse(fs.readFileSync(path.join(dir, "tasks.json"), "utf8"));
  const checks = {};
  for (const [name, entry] of Object.entries(tasks)) {
    checks[name] = ajv.compile({ oneOf: entry.results.map((file) => ({ $ref: ids[file] })) });
  }
  return {
    tasks,
    /** The queue a task must be sent to ("assignments" or "batch"). */
    queue(task) {
      if (!tasks[task]) throw new Error(`${task} is not in contract/tasks.json`);
      return tasks[task].queue;
    },
    /** Throw ContractViolation unless result is an answer task may give. */
    checkResult(task, result) {
      const check = checks[task];
      if (!check) throw new Error(`${task} is not in contract/tasks.json`);
      if (!check(result)) throw new ContractViolation(task, check.errors, result);
    },
  };
}

module.exports = { loadContract, ContractViolation, CONTRACT_DIR };
