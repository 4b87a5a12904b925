// edgecodec comparison page: no dependencies, no network besides this server.
"use strict";

const $ = (id) => document.getElementById(id);
// shown / shownLeft: the codec on each side of the split ("original": the uploaded image)
const state = { file: null, result: null, shown: "edgecodec", shownLeft: "original", originalUrl: null, urls: [],
  controller: null, info: null };

function fmt(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

// PSNR of a decode equal to the original is infinite (null in JSON, with identical: true).
function fmtPsnr(r) {
  return r.identical ? "∞ (identical)" : fmt(r.psnr, 2);
}

// Three significant digits, no trailing zeros: 20, 0.05, 4.19 (toFixed(1) gave "0.0" under 50,000 pixels).
function sig3(value) {
  return String(parseFloat(value.toPrecision(3)));
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

// A comparison that failed: the result still on show (if any) is of the settings before.
function showFailure(message) {
  showError(message);
  $("stale").hidden = !state.result;
}

// "JPEG, WebP and AVIF": the classical codecs this server has (JPEG XL and HEIC need optional packages),
// so the page does not promise rows that will not come.
function codecList() {
  const labels = state.info?.codec_labels ?? [];
  return labels.length <= 1 ? labels.join("") : `${labels.slice(0, -1).join(", ")} and ${labels.at(-1)}`;
}

function progressText() {
  if (!state.info) return "Comparing…";  // /api/info failed: which codecs run is not known
  const list = codecList();
  return list ? `Encoding with edgecodec, then ${list} at the same size…` : "Encoding with edgecodec…";
}

// The polite live region: written when a comparison starts or ends, never by the status line's
// 100 ms timer (a live region there was read out ten times a second). A failure clears it: the
// error box (role="alert") says it, and the next start is then a change that is announced again.
function announce(text) {
  $("announce").textContent = text;
}

function setBusy(text) {
  const status = $("status");
  clearInterval(state.timer);
  if (!text) { status.hidden = true; return; }
  const start = performance.now();
  const tick = () => { $("status-text").textContent = `${text} ${((performance.now() - start) / 1000).toFixed(1)} s`; };
  tick();
  status.hidden = false;
  state.timer = setInterval(tick, 100);
}

function blobUrl(b64, type) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  state.urls.push(url);
  return url;
}

async function loadInfo() {
  try {
    const resp = await fetch("/api/info");
    const info = await resp.json();
    state.info = info;
    const select = $("model");
    for (const m of info.models) {
      const opt = document.createElement("option");
      opt.value = m.name;
      opt.textContent = m.name + (m.default ? " (default)" : "");
      opt.dataset.summary = m.summary || "";
      if (m.name === info.default_model) opt.selected = true;
      select.appendChild(opt);
    }
    $("model-summary").textContent = select.selectedOptions[0]?.dataset.summary || "";
    const list = codecList();
    $("subtitle").textContent = list ? `against ${list} at the same size` : "(no classical codec installed to compare with)";
    $("version").textContent = `edgecodec ${info.version}`;
    // in KB below 1 MB, as the server's refusals say it (edgecodec/web/app.py, _size)
    const upload = info.max_upload_bytes < 1e6 ? `${sig3(info.max_upload_bytes / 1e3)} KB` :
      `${sig3(info.max_upload_bytes / 1e6)} MB`;
    $("limits").textContent = `Limits: ${upload} upload, ` +
      `${sig3(info.max_pixels / 1e6)} megapixels. Compared with: ${info.codecs.join(", ") || "none"}.`;
    if (!info.models.length) showError("No edgecodec model is installed (see `edgecodec models`).");
  } catch (err) {
    showError(`Cannot reach the edgecodec server: ${err}`);
  }
}

function releaseUrls() {
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
}

// No comparison on show: a new image was chosen (the old one's result and region are not its).
function clearResult() {
  releaseUrls();
  state.result = null;
  $("stage").hidden = true;
  $("table").hidden = true;
  $("summary").textContent = "";
  $("stale").hidden = true;
  $("placeholder").hidden = false;
}

function pickFile(file) {
  if (!file) return;
  state.file = file;
  clearResult();
  $("roi").value = "";  // typed or drawn for the previous image
  $("drop-text").textContent = `${file.name} (${(file.size / 1024).toFixed(1)} KiB)`;
  $("run").disabled = false;
  run();
}

async function run() {
  if (!state.file) return;
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  const params = new URLSearchParams();
  // no model listed (/api/info failed): none is named, and the server uses its default (an empty one is refused)
  if ($("model").value) params.set("model", $("model").value);
  if ($("mode-target").checked) params.set("target_size", $("target").value.trim());
  else params.set("quality", $("quality").value);
  if ($("lpips").checked) params.set("lpips", "1");
  const roi = $("roi").value.replace(/\s+/g, "");
  if (roi) {
    params.set("roi", roi);
    params.set("roi_quality", $("roi-quality").value);
  }
  showError("");
  $("run").disabled = true;
  const progress = progressText();
  setBusy(progress);
  announce(progress);
  try {
    const resp = await fetch(`/api/compress?${params}`, {
      method: "POST", body: state.file, signal: controller.signal,
      headers: { "Content-Type": "application/octet-stream" },
    });
    let data;
    try { data = await resp.json(); } catch { data = { error: `server answered HTTP ${resp.status}` }; }
    if (state.controller !== controller) return;  // a newer request replaced this one
    if (!resp.ok) {
      announce("");
      showFailure(`${data.error || data.detail || "request failed"} (HTTP ${resp.status})`);
      return;
    }
    show(data);
    const files = data.results.length;
    announce(`Comparison done in ${data.elapsed_s.toFixed(1)} s: ${files} file${files === 1 ? "" : "s"}, ` +
      "in the table below.");
  } catch (err) {
    if (err.name !== "AbortError") { announce(""); showFailure(`Request failed: ${err}`); }
  } finally {
    if (state.controller === controller) {
      state.controller = null;
      setBusy(null);
      $("run").disabled = false;
    }
  }
}

function show(data) {
  releaseUrls();
  state.result = data;
  const stem = (state.file.name.replace(/\.[^.]*$/, "") || "image").replace(/[^\w.-]+/g, "_");
  state.originalUrl = blobUrl(data.original_png, "image/png");
  for (const r of data.results) {
    r.pngUrl = blobUrl(r.png, "image/png");
    r.fileUrl = blobUrl(r.file, r.mime);
  }
  const known = (codec) => codec === "original" || data.results.some((r) => r.codec === codec);
  if (!known(state.shown)) state.shown = "edgecodec";
  if (!known(state.shownLeft)) state.shownLeft = "original";
  buildPicker("pick-left", "left", (codec) => { state.shownLeft = codec; showSides(); });
  buildPicker("pick", "pick", (codec) => { state.shown = codec; showSides(); });

  const tbody = $("results");
  tbody.textContent = "";
  const psnrOf = (r) => (r.identical ? Infinity : r.psnr ?? -Infinity);
  // Best among the files within the budget: edgecodec's sets it, and a classical file "over" it (even
  // its lowest quality is larger) was crowned for the PSNR its extra bytes bought.
  const withinBudget = (r) => r.codec === "edgecodec" || r.fits;
  const bestPsnr = Math.max(...data.results.filter(withinBudget).map(psnrOf));
  for (const r of data.results) {
    const tr = document.createElement("tr");
    if (withinBudget(r) && psnrOf(r) === bestPsnr && bestPsnr > -Infinity) tr.className = "best-row";
    const region = data.roi ? `, region ${data.roi_quality.toFixed(2)}` : "";
    const setting = r.codec === "edgecodec" ? `quality ${r.quality.toFixed(3)}${region}` : `q ${r.quality}`;
    const fits = r.fits ? "" : ' <span class="warn" title="even the lowest quality is larger than the target">over</span>';
    tr.innerHTML = `<td></td><td>${r.bytes.toLocaleString()}${fits}</td><td>${fmt(r.bpp, 3)}</td>` +
      `<td>${fmtPsnr(r)}${data.roi ? ` <span class="muted">(region ${fmt(r.region_psnr, 2)})</span>` : ""}</td>` +
      `<td>${fmt(r.ms_ssim, 4)}</td><td>${fmt(r.st_lpips, 4)}</td><td>${setting}</td><td></td>`;
    tr.cells[0].textContent = r.label;
    const file = document.createElement("a");
    file.href = r.fileUrl;
    file.download = stem + r.extension;
    file.textContent = r.extension;
    const png = document.createElement("a");
    png.href = r.pngUrl;
    png.download = `${stem}.${r.codec}.png`;
    png.textContent = "decoded PNG";
    if (r.codec === "edgecodec") { file.id = "download-edc"; png.id = "download-png"; }
    tr.cells[7].append(file, png);
    tbody.appendChild(tr);
  }
  $("table").hidden = false;
  const conv = data.source.conversions.length ? `; converted: ${data.source.conversions.join(", ")}` : "";
  $("summary").textContent = `${data.width}×${data.height} ${data.source.format || ""} image${conv}. ` +
    `Classical codecs get at most ${data.target_bytes.toLocaleString()} bytes (the edgecodec file's size)` +
    (data.requested_bytes ? `; requested ${data.requested_bytes.toLocaleString()} bytes` : "") +
    `. Computed in ${data.elapsed_s.toFixed(1)} s.` +
    // a codec that cannot code this image (WebP: at most 16,383 pixels a side) has no row: said why
    (data.skipped?.length ? ` Not compared: ${data.skipped.map((x) => `${x.label} (${x.reason})`).join("; ")}.` : "");
  $("placeholder").hidden = true;
  $("stale").hidden = true;
  $("stage").hidden = false;
  applyZoom();
  showSides();
  outlineRegion(data.roi);
}

// The region of interest drawn over the images, in percent of the stage, so that it follows the zoom.
function outlineRegion(roi) {
  const box = $("roi-box");
  box.hidden = !roi;
  if (!roi) return;
  const [left, top, width, height] = roi;
  const w = state.result.width, h = state.result.height;
  Object.assign(box.style, { left: `${(100 * left) / w}%`, top: `${(100 * top) / h}%`,
                             width: `${(100 * width) / w}%`, height: `${(100 * height) / h}%` });
}

// A pointer position in the image's pixels, within the image.
function imagePoint(e) {
  const rect = $("stage").getBoundingClientRect();
  const w = state.result.width, h = state.result.height;
  return [Math.min(w, Math.max(0, ((e.clientX - rect.left) / rect.width) * w)),
          Math.min(h, Math.max(0, ((e.clientY - rect.top) / rect.height) * h))];
}

// One button per image a side can show: the original, then each codec's decoded file.
function buildPicker(containerId, prefix, choose) {
  const pick = $(containerId);
  pick.textContent = "";
  for (const r of [{ codec: "original", label: "original" }, ...state.result.results]) {
    const b = document.createElement("button");
    b.type = "button";
    b.id = `${prefix}-${r.codec}`;
    b.textContent = r.label;
    b.addEventListener("click", () => choose(r.codec));
    pick.appendChild(b);
  }
}

function sideImage(codec) {
  if (codec === "original") return { url: state.originalUrl, caption: "original" };
  const r = state.result.results.find((x) => x.codec === codec);
  return { url: r.pngUrl, caption: `${r.label}: ${r.bytes.toLocaleString()} B, ${r.identical ? "identical" : `${fmt(r.psnr, 2)} dB`}` };
}

function showSides() {
  for (const [img, tag, picker, prefix, codec] of [["left", "tag-left", "pick-left", "left", state.shownLeft],
                                                   ["right", "tag-right", "pick", "pick", state.shown]]) {
    const side = sideImage(codec);
    $(img).src = side.url;
    $(img).alt = side.caption;
    $(tag).textContent = side.caption;
    for (const b of $(picker).children) {
      const on = b.id === `${prefix}-${codec}`;
      b.classList.toggle("on", on);
      b.setAttribute("aria-pressed", String(on));  // the colour alone says nothing to a screen reader
    }
  }
}

function setSplit(percent) {
  const p = Math.min(100, Math.max(0, percent));
  $("left").style.clipPath = `inset(0 ${100 - p}% 0 0)`;
  $("handle").style.left = `${p}%`;
  $("split").value = p;
}

function applyZoom() {
  const stage = $("stage");
  const z = $("zoom").value;
  if (!state.result) return;
  if (z === "fit") {
    stage.style.width = "";
    stage.style.maxWidth = `min(100%, ${state.result.width}px)`;
  } else {
    stage.style.maxWidth = "none";
    stage.style.width = `${state.result.width * Number(z) / (window.devicePixelRatio || 1)}px`;
  }
  stage.classList.toggle("pixelated", z !== "fit" && Number(z) >= 2);
}

function setupDrag() {
  const stage = $("stage");
  let dragging = false;
  let corner = null;  // Shift + drag: the first corner of a region of interest, in image pixels
  let cornerAt = null;  // ... and where the pointer went down, in screen pixels
  const CLICK_PX = 4;  // a Shift + click that moved less than this draws no region
  const move = (e) => {
    const rect = stage.getBoundingClientRect();
    setSplit(((e.clientX - rect.left) / rect.width) * 100);
  };
  const region = (e) => {
    const [x, y] = imagePoint(e);
    const left = Math.floor(Math.min(x, corner[0])), top = Math.floor(Math.min(y, corner[1]));
    return [left, top, Math.ceil(Math.max(x, corner[0])) - left, Math.ceil(Math.max(y, corner[1])) - top];
  };
  stage.addEventListener("pointerdown", (e) => {
    stage.setPointerCapture(e.pointerId);
    if (e.shiftKey && state.result) { corner = imagePoint(e); cornerAt = [e.clientX, e.clientY]; }
    else { dragging = true; move(e); }
  });
  stage.addEventListener("pointermove", (e) => {
    if (corner) outlineRegion(region(e));
    else if (dragging) move(e);
  });
  stage.addEventListener("pointerup", (e) => {
    dragging = false;
    if (!corner) return;
    const roi = region(e);
    const drawn = Math.abs(e.clientX - cornerAt[0]) >= CLICK_PX && Math.abs(e.clientY - cornerAt[1]) >= CLICK_PX;
    corner = null;
    if (drawn && roi[2] > 0 && roi[3] > 0) {
      $("roi").value = roi.join(",");
      run();
    } else outlineRegion(state.result.roi);
  });
  stage.addEventListener("pointercancel", () => {
    dragging = false;
    if (corner) { corner = null; outlineRegion(state.result.roi); }
  });
  $("split").addEventListener("input", (e) => setSplit(Number(e.target.value)));
  // Ctrl/Cmd + wheel over the image zooms through the steps of the zoom menu.
  $("viewer").addEventListener("wheel", (e) => {
    if (!(e.ctrlKey || e.metaKey) || !state.result) return;
    e.preventDefault();
    const select = $("zoom");
    select.selectedIndex = Math.min(select.options.length - 1, Math.max(0, select.selectedIndex + (e.deltaY < 0 ? 1 : -1)));
    applyZoom();
  }, { passive: false });
}

function setupInputs() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => pickFile(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    e.stopPropagation();  // the document's handler below would start a second comparison
    drop.classList.remove("over");
    pickFile(e.dataTransfer.files[0]);
  });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => { e.preventDefault(); pickFile(e.dataTransfer.files[0]); });
  const q = $("quality");
  q.addEventListener("input", () => { $("quality-value").textContent = Number(q.value).toFixed(2); });
  const rq = $("roi-quality");
  rq.addEventListener("input", () => { $("roi-quality-value").textContent = Number(rq.value).toFixed(2); });
  rq.addEventListener("change", () => { if ($("roi").value.trim()) run(); });  // as the quality slider
  $("roi").addEventListener("keydown", (e) => { if (e.key === "Enter") run(); });
  q.addEventListener("change", run);  // on release: one request per choice, not per pixel dragged
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => {
      $("target").disabled = !$("mode-target").checked;
      q.disabled = $("mode-target").checked;
      run();
    });
  }
  $("target").addEventListener("keydown", (e) => { if (e.key === "Enter") run(); });
  $("model").addEventListener("change", () => {
    $("model-summary").textContent = $("model").selectedOptions[0]?.dataset.summary || "";
    run();
  });
  $("lpips").addEventListener("change", run);
  $("run").addEventListener("click", run);
  $("zoom").addEventListener("change", applyZoom);
}

setupInputs();
setupDrag();
setSplit(50);
loadInfo();
