// Hone's dataset check, off the page's main thread: this module worker loads
// the same WASM bundle as the page and runs `check_in_worker` (app/src/worker.rs)
// on the file it is sent, posting progress as it reads the file in slices.
import init, { check_in_worker } from "./hone.js";

const ready = init();

self.onmessage = async (event) => {
  const { file, request } = event.data;
  try {
    await ready;
    const result = await check_in_worker(file, request, (done) =>
      self.postMessage({ kind: "progress", done }),
    );
    // The items' buffer is transferred, not copied.
    self.postMessage({ kind: "done", result }, [result.items.buffer]);
  } catch (error) {
    self.postMessage({ kind: "error", message: String((error && error.message) || error) });
  }
};
