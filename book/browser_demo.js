// The page "Run it in your browser" (book/run_in_browser.md): chapter 7's two networks, and MobileViT-XXS
// on ImageNet when the book was built online, run by ONNX Runtime Web (WebAssembly) on the reader's device.
// scripts/browser_demo_assets.py copies this file next to the networks and demo.json (_static/browser_demo/);
// ONNX Runtime Web itself is in _static/ort/ (scripts/book_assets.sh, from npm). Nothing comes from elsewhere.
import * as ort from "../ort/ort.wasm.min.mjs";

const here = new URL(".", import.meta.url);
const $ = (id) => document.getElementById(id);
const WARMUP = 5, RUNS = 30;

// WebAssembly threads need SharedArrayBuffer, which browsers give only to cross-origin isolated pages
// (served with COOP/COEP headers); a static host such as GitHub Pages cannot send them, so: 1 thread.
const threads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
ort.env.wasm.numThreads = threads;
ort.env.wasm.wasmPaths = new URL("../ort/", import.meta.url).href;

export const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const softmax = (z) => { const m = Math.max(...z); const e = z.map((v) => Math.exp(v - m)); const t = e.reduce((a, b) => a + b, 0); return e.map((v) => v / t); };
const kB = (bytes) => `${Math.round(bytes / 1e3).toLocaleString("en")} kB`;

// the median time of `runs` runs after `warmup` ones (benchmarks/browser_latency.py imports it too)
export async function timeRuns(session, feeds, warmup = WARMUP, runs = RUNS) {
  for (let i = 0; i < warmup; i++) await session.run(feeds);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t0);
  }
  return median(times);
}

// ---------------------------------------------------------------- chapter 7's task: two marks
function drawImage(task, marks, seed) {
  // as mobilevit_edu.data.matching_marks: grey 0.5 +- noise/2 per pixel (same in the three channels), two squares
  const R = task.resolution, S = task.mark_size, x = new Float32Array(3 * R * R);
  let state = seed >>> 0 || 1;
  const rand = () => { state ^= state << 13; state ^= state >>> 17; state ^= state << 5; return (state >>> 0) / 4294967296; };
  for (let i = 0; i < R * R; i++) { const g = 0.5 + task.noise * (rand() - 0.5); x[i] = g; x[R * R + i] = g; x[2 * R * R + i] = g; }
  for (const m of marks) {
    const rgb = task.palette[m.colour];
    for (let r = m.row; r < m.row + S; r++) for (let c = m.col; c < m.col + S; c++)
      for (let ch = 0; ch < 3; ch++) x[ch * R * R + r * R + c] = rgb[ch];
  }
  return x;
}

function randomMarks(task) {
  const R = task.resolution, S = task.mark_size, half = R >> 1, k = task.palette.length;
  const qy = Math.random() < 0.5 ? 0 : 1, qx = Math.random() < 0.5 ? 0 : 1;
  const first = Math.floor(Math.random() * k);
  const second = Math.random() < 0.5 ? first : (first + 1 + Math.floor(Math.random() * (k - 1))) % k;
  const place = (q) => q * (R - half) + Math.floor(Math.random() * (half - S + 1));
  return [{ row: place(qy), col: place(qx), colour: first }, { row: place(1 - qy), col: place(1 - qx), colour: second }];
}

function paint(canvas, task, x) {
  const R = task.resolution, ctx = canvas.getContext("2d"), img = ctx.createImageData(R, R);
  for (let i = 0; i < R * R; i++) {
    for (let ch = 0; ch < 3; ch++) img.data[4 * i + ch] = Math.round(255 * x[ch * R * R + i]);
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

async function marksDemo(demo, sessions) {
  const task = demo.task, R = task.resolution, S = task.mark_size;
  const canvas = $("demo-canvas"), colourA = $("demo-colour-a"), colourB = $("demo-colour-b");
  for (const select of [colourA, colourB])
    select.innerHTML = task.colour_names.map((n, i) => `<option value="${i}">${n}</option>`).join("");
  let marks = randomMarks(task), next = 0, seed = 1;
  const sync = () => { colourA.value = marks[0].colour; colourB.value = marks[1].colour; };
  async function update() {
    const x = drawImage(task, marks, seed);
    paint(canvas, task, x);
    const truth = marks[0].colour === marks[1].colour ? "same" : "different";
    const feeds = { image: new ort.Tensor("float32", x, [1, 3, R, R]) };
    const rows = [];
    for (const [name, session] of Object.entries(sessions)) {
      const t0 = performance.now();
      const logits = Array.from((await session.run(feeds)).logits.data);
      const ms = performance.now() - t0;
      const p = softmax(logits), k = p[1] > p[0] ? 1 : 0;
      rows.push(`<tr><td>${name}</td><td>${task.classes[k]}${task.classes[k] === truth ? " ✓" : " ✗"}</td>` +
                `<td>${(100 * p[k]).toFixed(0)} %</td><td>${ms.toFixed(1)} ms</td></tr>`);
    }
    $("demo-answers").innerHTML = `<tr><th>network</th><th>answer</th><th>confidence</th><th>this run</th></tr>` + rows.join("");
    $("demo-truth").textContent = `The marks are ${truth === "same" ? "the same colour" : "different colours"}.`;
  }
  canvas.addEventListener("click", (event) => {
    const box = canvas.getBoundingClientRect();
    const clamp = (v) => Math.max(0, Math.min(R - S, v));
    const col = clamp(Math.floor(((event.clientX - box.left) / box.width) * R - S / 2));
    const row = clamp(Math.floor(((event.clientY - box.top) / box.height) * R - S / 2));
    marks[next] = { ...marks[next], row, col };
    next = 1 - next;
    seed += 1;
    update();
  });
  colourA.addEventListener("change", () => { marks[0].colour = +colourA.value; update(); });
  colourB.addEventListener("change", () => { marks[1].colour = +colourB.value; update(); });
  $("demo-random").addEventListener("click", () => { marks = randomMarks(task); next = 0; seed += 1; sync(); update(); });
  $("demo-measure").addEventListener("click", async () => {
    $("demo-measure").disabled = true;
    $("demo-latency").innerHTML = "<tr><td>measuring…</td></tr>";
    const feeds = { image: new ort.Tensor("float32", drawImage(task, marks, seed), [1, 3, R, R]) };
    const rows = [];
    for (const [name, session] of Object.entries(sessions)) {
      const ms = await timeRuns(session, feeds);
      const n = demo.networks[name].native;
      rows.push(`<tr><td>${name}</td><td>${ms.toFixed(2)} ms</td><td>${n.onnxruntime_ms.toFixed(2)} ms</td><td>${n.pytorch_ms.toFixed(2)} ms</td></tr>`);
    }
    $("demo-latency").innerHTML = `<tr><th>network</th><th>your device (wasm, ${threads} thread${threads > 1 ? "s" : ""})</th>` +
      `<th>book's ONNX Runtime</th><th>book's PyTorch</th></tr>` + rows.join("");
    $("demo-measure").disabled = false;
  });
  sync();
  await update();
}

// ---------------------------------------------------------------- the self-test
async function selfTest(demo, sessions) {
  const t = demo.self_test, feeds = { image: new ort.Tensor("float32", Float32Array.from(t.input), t.shape) };
  let maxDiff = 0;
  for (const [name, session] of Object.entries(sessions)) {
    const got = (await session.run(feeds)).logits.data, want = demo.networks[name].self_test_logits;
    want.forEach((w, i) => { maxDiff = Math.max(maxDiff, Math.abs(got[i] - w)); });
  }
  const latency = await timeRuns(sessions.mobilevit_mini, feeds);
  const result = { ok: maxDiff <= t.tolerance, max_abs_diff: maxDiff, latency_ms: latency, backend: "wasm",
                   threads, cross_origin_isolated: self.crossOriginIsolated, model: "mobilevit_mini",
                   onnxruntime_web: ort.env.versions.web };
  $("mobilevit-demo-result").textContent = JSON.stringify(result);
  $("demo-selftest").textContent = (result.ok ? "Self-test passed: " : "Self-test FAILED: ") +
    `on the fixed test image, both networks' outputs here differ from PyTorch's by at most ${maxDiff.toExponential(1)} ` +
    `(allowed: ${t.tolerance}). The small MobileViT takes ${latency.toFixed(2)} ms per image on this device ` +
    `(median of ${RUNS} runs after ${WARMUP} warm-up runs), on ONNX Runtime Web ${ort.env.versions.web}'s WebAssembly backend ` +
    `with ${threads} thread${threads > 1 ? "s" : ""}` + (self.crossOriginIsolated ? "." :
    ": this page is not cross-origin isolated, so the browser gives WebAssembly no shared memory, hence no threads.");
}

// ---------------------------------------------------------------- ImageNet (only in the book built online)
async function imagenetDemo(demo) {
  const part = demo.imagenet;
  if (!part.available) { $("demo-imagenet").textContent = part.why; return; }
  const session = await ort.InferenceSession.create(new URL(part.file, here).href, { executionProviders: ["wasm"] });
  $("demo-imagenet").innerHTML = `<p>MobileViT-XXS with the paper's ImageNet weights (${kB(part.bytes)}): choose a photo.</p>` +
    `<input type="file" accept="image/*" capture="environment" id="demo-photo"><canvas id="demo-photo-canvas" width="256" height="256"></canvas><ol id="demo-top5"></ol>`;
  $("demo-photo").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const bitmap = await createImageBitmap(file), N = part.input_size, pre = part.preprocessing;
    // as mobilevit_edu.pretrained.preprocess (timm's rule): shorter side to floor(N / crop_pct), centre crop N x N,
    // pixels / 255, channel order, (x - mean) / std; the browser's smoothing stands in for PIL's bicubic filter
    const scale = Math.floor(N / pre.crop_pct) / Math.min(bitmap.width, bitmap.height);
    const w = bitmap.width * scale, h = bitmap.height * scale;
    const ctx = $("demo-photo-canvas").getContext("2d");
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(bitmap, (N - w) / 2, (N - h) / 2, w, h);
    const rgba = ctx.getImageData(0, 0, N, N).data, x = new Float32Array(3 * N * N);
    const source = pre.channel_order === "BGR" ? [2, 1, 0] : [0, 1, 2];  // which RGBA byte feeds channel ch
    for (let i = 0; i < N * N; i++)
      for (let ch = 0; ch < 3; ch++) x[ch * N * N + i] = (rgba[4 * i + source[ch]] / 255 - pre.mean[ch]) / pre.std[ch];
    const t0 = performance.now();
    const logits = Array.from((await session.run({ image: new ort.Tensor("float32", x, [1, 3, N, N]) })).logits.data);
    const ms = performance.now() - t0, p = softmax(logits);
    const top = p.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0]).slice(0, 5);
    $("demo-top5").innerHTML = top.map(([v, i]) => `<li>${part.class_names[i]}: ${(100 * v).toFixed(1)} %</li>`).join("") +
      `<li style="list-style:none">(${ms.toFixed(0)} ms on this device, for this one run)</li>`;
    $("demo-top5").dataset.result = JSON.stringify(top.map(([v, i]) => ({ index: i, probability: v })));  // for checks
  });
}

async function main() {
  const demo = await (await fetch(new URL("demo.json", here))).json();
  const ortBytes = Object.values(demo.ort_web_bytes).reduce((a, b) => a + b, 0);
  const netBytes = Object.values(demo.networks).reduce((a, n) => a + n.bytes, 0);
  $("demo-bytes").textContent = `This page loads ${kB(ortBytes + netBytes)}: ONNX Runtime Web's script and WebAssembly ` +
    `(${kB(ortBytes)}, the same for any network) and the two networks (${Object.values(demo.networks).map((n) => `${n.file} ${kB(n.bytes)}`).join(", ")})` +
    (demo.imagenet.available ? `; MobileViT-XXS adds ${kB(demo.imagenet.bytes)}.` : ".");
  $("demo-native-machine").textContent = demo.native_machine;
  const sessions = {};
  for (const name of Object.keys(demo.networks))
    sessions[name] = await ort.InferenceSession.create(new URL(demo.networks[name].file, here).href, { executionProviders: ["wasm"] });
  await selfTest(demo, sessions);
  await marksDemo(demo, sessions);
  await imagenetDemo(demo);
}

if ($("mobilevit-demo-result")) {  // on the book's page (a page that only imports timeRuns has none)
  main().catch((error) => {
    const result = { ok: false, error: String(error), backend: "wasm", threads };
    $("mobilevit-demo-result").textContent = JSON.stringify(result);
    $("demo-selftest").textContent = `The demo could not start: ${error}`;
  });
}
