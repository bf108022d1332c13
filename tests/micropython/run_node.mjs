// Runs the pulser pump node under the MicroPython WebAssembly port, in Node, on a pseudo-terminal.
//
// drivers/pulser/meter.py, wire.py, node.py and board.py are written unchanged into MicroPython's
// in-memory filesystem as /meter.py, /wire.py, /node.py, /board.py (node.py falls back to `import wire`
// and `from meter import ...` there, as on a board); node_harness.py runs board.Board on a simulated
// `machine` and meter. The node's UART is the master side of a pty the caller opened and passed as an
// open file descriptor (--fd); the terminal opens the pty's other side as it would /dev/ttyAMA1.
//
// stdin takes one command a line: lift, hang, drop request|reply <type> [n], noise, restart, status,
// quit.
// stdout: "MicroPython x.y.z", "ready", then one line per command and per lost frame.
//
// Usage: node tests/micropython/run_node.mjs --fd 3 [--flow 2000] [--slow-ratio 0.2] [--k 100000]

import { readFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { ReadStream } from "node:tty";
import { fileURLToPath } from "node:url";

import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");

const opts = { fd: "", flow: "2000", "slow-ratio": "0.2", k: "100000" };
const argv = process.argv.slice(2);
for (let i = 0; i + 1 < argv.length; i += 2) {
  const name = argv[i].replace(/^--/, "");
  if (!(name in opts)) {
    console.error("run_node: unknown option " + argv[i]);
    process.exit(2);
  }
  opts[name] = argv[i + 1];
}
const fd = Number.parseInt(opts.fd, 10);
if (!Number.isInteger(fd) || fd < 0) {
  console.error("run_node: --fd <open pty master> is required");
  process.exit(2);
}

const started = performance.now();
const now = () => Math.floor(performance.now() - started) + 1;

const mp = await loadMicroPython({
  heapsize: 4 * 1024 * 1024,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
for (const name of ["meter", "wire", "node", "board"]) {
  mp.FS.writeFile("/" + name + ".py", readFileSync(join(repo, "drivers", "pulser", name + ".py")));
}
mp.FS.writeFile("/node_harness.py", readFileSync(join(here, "node_harness.py")));

function fail(err) {
  // a PythonError: the node's code raised (or could not even load under MicroPython)
  console.error("run_node: MicroPython raised: " + (err && err.message ? err.message : String(err)));
  process.exit(1);
}

let harness;
try {
  mp.runPython(
    "import node_harness\n" +
    "print(node_harness.version())\n" +
    "harness = node_harness.Harness(" + Number(opts.flow) + ", " + Number(opts["slow-ratio"]) + ", " +
    Number.parseInt(opts.k, 10) + ", " + now() + ")\n",
  );
  harness = mp.globals.get("harness");
} catch (err) {
  fail(err);
}

function send(hex) {
  if (!hex) return;
  try {
    writeSync(fd, Buffer.from(hex, "hex"));
  } catch (err) {
    // EAGAIN (the terminal is not reading) or EIO (it closed the line): the bytes are lost, as on a wire
  }
}

const line = new ReadStream(fd);
line.on("data", (data) => {
  try {
    send(harness.feed(Buffer.from(data).toString("hex"), now()));
  } catch (err) {
    fail(err);
  }
});
line.on("error", () => {}); // EIO once the terminal's side is closed

const timer = setInterval(() => {
  try {
    send(harness.step(now()));
  } catch (err) {
    fail(err);
  }
}, 2);

function quit() {
  clearInterval(timer);
  line.destroy();
  process.exit(0);
}

const control = createInterface({ input: process.stdin });
control.on("line", (text) => {
  if (text.trim() === "quit") quit();
  try {
    harness.command(text, now());
    send(harness.step(now()));
  } catch (err) {
    fail(err);
  }
});
control.on("close", quit);
console.log("ready");
