// Runs the DART codec vectors (dart_vectors.py) under the MicroPython WebAssembly port, in Node.
//
// drivers/pump/dart.py is written unchanged into MicroPython's in-memory filesystem as /dart.py ("" is on
// MicroPython's sys.path and the cwd is /), so `import dart` loads the very source CPython uses. The
// vectors print "N passed, N failed"; the exit code is 0 only when every vector passed and none was lost
// to an error outside the runner (a SyntaxError in dart.py, say).
//
// Usage: node tests/micropython/run_vectors.mjs   (after `npm ci` in tests/micropython)

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");

const mp = await loadMicroPython({
  heapsize: 8 * 1024 * 1024,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

mp.FS.writeFile("/dart.py", readFileSync(join(repo, "drivers", "pump", "dart.py")));
mp.FS.writeFile("/dart_vectors.py", readFileSync(join(here, "dart_vectors.py")));

let failed = 1;
try {
  mp.runPython(
    "import sys\n" +
    "print('MicroPython ' + '.'.join(str(v) for v in sys.implementation.version[:3]))\n" +
    "import dart_vectors\n" +
    "_passed, _failed = dart_vectors.run()\n",
  );
  const passed = mp.globals.get("_passed");
  failed = mp.globals.get("_failed");
  if (passed === 0) {
    console.error("run_vectors: no vector ran");
    failed = 1;
  }
} catch (err) {
  // a PythonError from runPython: dart.py or the vectors could not even load
  console.error("run_vectors: MicroPython raised: " + (err && err.message ? err.message : String(err)));
  console.log("0 passed, 1 failed");
  failed = 1;
}
process.exit(failed === 0 ? 0 : 1);
