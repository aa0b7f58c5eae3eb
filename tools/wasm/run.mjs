// Run MicroPython code on the official WebAssembly port: a 32-bit MicroPython
// (sys.maxsize 2**31-1, 4-byte array('l') slots, 31-bit small ints), as on the boards.
//
//   node tools/wasm/run.mjs [--heap BYTES] [--root DIR] CHUNK_FILE...
//   node tools/wasm/run.mjs -c "print(1)"
//
// The project's firmware/, drivers/, boards/ and tools/mpy/ .py files are copied into the
// port's filesystem under /lib (on sys.path). Each CHUNK is run as its own top-level call
// (runPython): this port only collects garbage between top-level calls, because it cannot
// scan the wasm stack, so a live-heap figure belongs in a chunk of its own after
// gc.collect(). A chunk file may hold several chunks separated by a line "#@@CHUNK".
// stdout of the Python code goes to stdout; a Python exception prints its traceback to
// stderr and exits with status 1.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";

const here = path.dirname(fileURLToPath(import.meta.url));
let root = path.resolve(here, "..", "..");
let heap = 1024 * 1024;
const chunks = [];
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--heap") heap = parseInt(args[++i], 10);
  else if (a === "--root") root = path.resolve(args[++i]);
  else if (a === "-c") chunks.push(args[++i]);
  else {
    const text = fs.readFileSync(a === "-" ? 0 : a, "utf8");
    for (const c of text.split(/^#@@CHUNK.*$/m)) chunks.push(c);
  }
}

const DIRS = ["firmware", "drivers", "boards", "tools/mpy"];

function copyTree(mp, src, dst) {
  if (!fs.existsSync(src)) return;
  mp.FS.mkdirTree(dst);
  for (const ent of fs.readdirSync(src, { withFileTypes: true })) {
    if (ent.name === "__pycache__") continue;
    const s = path.join(src, ent.name);
    const d = dst + "/" + ent.name;
    if (ent.isDirectory()) copyTree(mp, s, d);
    else if (ent.name.endsWith(".py")) mp.FS.writeFile(d, fs.readFileSync(s));
  }
}

let out = "";
const flush = () => { if (out) { process.stdout.write(out); out = ""; } };
const mp = await loadMicroPython({
  heapsize: heap,
  stdout: (line) => { out += line + "\n"; if (out.length > 65536) flush(); },
  stderr: (line) => { process.stderr.write(line + "\n"); },
});
for (const d of DIRS) copyTree(mp, path.join(root, d), "/lib/" + d);
mp.FS.mkdirTree("/lib/tools");
mp.FS.writeFile("/lib/tools/__init__.py", "");
mp.runPython("import sys\nsys.path.insert(0, '/lib')\n");
let status = 0;
for (const c of chunks) {
  try {
    mp.runPython(c);
  } catch (e) {
    flush();
    if (e && e.name === "PythonError") {
      if (e.type !== "SystemExit") { process.stderr.write(e.message + "\n"); status = 1; }
    } else { process.stderr.write(String(e && e.stack || e) + "\n"); status = 1; }
    break;
  }
}
flush();
process.exit(status);
