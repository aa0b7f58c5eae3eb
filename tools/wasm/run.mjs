// Run MicroPython code on the official WebAssembly port: a 32-bit MicroPython
// (sys.maxsize 2**31-1, 4-byte array('l') slots, 31-bit small ints), as on the boards.
//
//   node tools/wasm/run.mjs [options] FILE...      (FILE "-" reads stdin)
//   node tools/wasm/run.mjs -c "print(1)"
//
// options:
//   --root DIR      project whose firmware/, drivers/, boards/, tools/mpy/ .py files are
//                   copied into the port's filesystem under /lib (on sys.path); default:
//                   this worktree
//   --no-project    copy none of them
//   --lib DIR       also copy DIR's .py and .mpy files into /lib (tree kept), after the
//                   project's, so a precompiled .mpy tree can stand in for the sources
//   --heap BYTES    initial GC heap (default 1 MiB). NOT a limit: this build grows its
//                   heap on demand (split heap), so a MemoryError never comes from it
//   --pystack WORDS Python stack for calls (default 2048 words)
//
// Chunks: each -c argument is one chunk; a FILE is split into chunks at lines starting
// "#@@CHUNK". Each chunk runs as its own top-level call (runPython), so line numbers in a
// traceback are those of the file. Garbage: this port cannot scan the wasm stack, so
// gc.collect() inside a call only marks a collection as pending; it happens when the
// next top-level call begins. A live-heap figure is therefore: gc.collect() in one chunk,
// gc.mem_alloc() read in a later one. Allocation counts inside one call are exact.
//
// Exit status: 0; 1 on a Python exception (traceback on stderr, with the chunk named);
// the code of SystemExit; 2 on a bad command line or a missing runtime.
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";

const here = path.dirname(fileURLToPath(import.meta.url));
const PKG = "@micropython/micropython-webassembly-pyscript";
const DIRS = ["firmware", "drivers", "boards", "tools/mpy"];

function die(msg) {
  process.stderr.write("run.mjs: " + msg + "\n");
  process.exit(2);
}

let root = path.resolve(here, "..", "..");
let project = true;
let heap = 1024 * 1024;
let pystack = 2048;
const libs = [];
const chunks = [];    // {code, where}

function intArg(name, v) {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) die(`${name} needs a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const next = () => {
    if (i + 1 >= args.length) die(`${a} needs a value`);
    return args[++i];
  };
  if (a === "--heap") heap = intArg(a, next());
  else if (a === "--pystack") pystack = intArg(a, next());
  else if (a === "--root") root = path.resolve(next());
  else if (a === "--no-project") project = false;
  else if (a === "--lib") libs.push(path.resolve(next()));
  else if (a === "-c") chunks.push({ code: next(), where: "-c argument" });
  else if (a.startsWith("-") && a !== "-") die(`unknown option ${a}`);
  else {
    let text;
    try {
      text = fs.readFileSync(a === "-" ? 0 : a, "utf8");
    } catch (e) {
      die(`cannot read ${a}: ${e.code || e.message}`);
    }
    // Pad each chunk with the blank lines before it: tracebacks give file line numbers.
    const lines = text.split("\n");
    let start = 0;
    const push = (end) => {
      const code = "\n".repeat(start) + lines.slice(start, end).join("\n");
      chunks.push({ code, where: `${a === "-" ? "stdin" : a} line ${start + 1}` });
    };
    for (let k = 0; k < lines.length; k++) {
      if (lines[k].startsWith("#@@CHUNK")) {
        push(k);
        start = k + 1;
      }
    }
    push(lines.length);
  }
}
if (!chunks.length) die("nothing to run: give FILE, - or -c CODE");

let loadMicroPython;
try {
  ({ loadMicroPython } = await import(PKG));
} catch (e) {
  die(`the 32-bit MicroPython (npm ${PKG}) is not installed in ${here}/node_modules: ` +
      `run "make wasm32" (${e.code || e.message})`);
}

// stdout: raw bytes, buffered, written in large pieces (no line limit, no lost tail).
let buf = Buffer.alloc(1 << 16);
let used = 0;
const flush = () => {
  if (used) { process.stdout.write(Buffer.from(buf.subarray(0, used))); used = 0; }
};
const errOut = [];
const mp = await loadMicroPython({
  heapsize: heap,
  pystack,
  linebuffer: false,
  stdout: (b) => { if (used === buf.length) flush(); buf[used++] = b[0]; },
  stderr: (b) => { errOut.push(b[0]); },
});

function copyTree(src, dst, exts) {
  if (!fs.existsSync(src)) return;
  mp.FS.mkdirTree(dst);
  for (const ent of fs.readdirSync(src, { withFileTypes: true })) {
    if (ent.name === "__pycache__" || ent.name === "node_modules") continue;
    const s = path.join(src, ent.name);
    const d = dst + "/" + ent.name;
    if (ent.isDirectory()) copyTree(s, d, exts);
    else if (exts.some((x) => ent.name.endsWith(x))) mp.FS.writeFile(d, fs.readFileSync(s));
  }
}

if (project) {
  for (const d of DIRS) copyTree(path.join(root, d), "/lib/" + d, [".py"]);
  mp.FS.mkdirTree("/lib/tools");
  mp.FS.writeFile("/lib/tools/__init__.py", "");
}
for (const l of libs) {
  if (!fs.existsSync(l)) die(`--lib ${l}: no such directory`);
  copyTree(l, "/lib", [".py", ".mpy"]);
}
mp.runPython("import sys\nsys.path.insert(0, '/lib')\n");

let status = 0;
for (let k = 0; k < chunks.length; k++) {
  try {
    mp.runPython(chunks[k].code);
  } catch (e) {
    flush();
    if (e && e.name === "PythonError" && e.type === "SystemExit") {
      // "SystemExit: 3" -> 3; no code or None -> 0; any other value -> 1 (as CPython)
      const m = /SystemExit: ?(.*)\n?$/.exec(e.message);
      const v = m ? m[1].trim() : "";
      status = v === "" || v === "None" ? 0 : /^-?\d+$/.test(v) ? Number(v) & 255 : 1;
      if (status === 1 && v) process.stderr.write(v + "\n");
    } else if (e && e.name === "PythonError") {
      process.stderr.write(e.message.replace(/\n?$/, "\n") +
        `(wasm32 MicroPython, chunk ${k + 1} of ${chunks.length}, from ${chunks[k].where})\n`);
      status = 1;
    } else {
      process.stderr.write(`wasm32 runtime failure in chunk ${k + 1} of ${chunks.length} ` +
        `(from ${chunks[k].where}): ${(e && e.stack) || e}\n`);
      status = 1;
    }
    break;
  }
}
flush();
if (errOut.length) process.stderr.write(Buffer.from(errOut));
process.exitCode = status;
// Let stdout drain to a pipe before exiting (an early exit can cut a large output).
process.stdout.write("", () => process.exit(status));
