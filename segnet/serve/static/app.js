// The page: pick or drop an image, POST it to /v1/segment?format=png, colour the returned
// class indices in the browser with the palette of /v1/info (so the opacity slider and the
// class toggles need no new request), and offer the server's PNG and overlay for download.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, file: null, photo: null, labels: null, hidden: new Set(), png: null };

function setStatus(text, phase) {
  $("status").textContent = text;
  document.body.dataset.state = phase;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function headers() {
  const key = sessionStorage.getItem("segnet-api-key");
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// fetch that turns any non-2xx answer into an Error carrying the API's one-line message.
async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: headers() });
  } catch (err) {
    throw new Error(`cannot reach the server (${err.message})`);
  }
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).error || message;
    } catch (_) { /* not JSON: keep the status text */ }
    const err = new Error(`${response.status}: ${message}`);
    err.status = response.status;
    throw err;
  }
  return response;
}

async function loadInfo() {
  try {
    state.info = await (await api("/v1/info")).json();
  } catch (err) {
    if (err.status === 401) {
      $("keyform").hidden = false;
      $("model").textContent = "API key needed";
      if (sessionStorage.getItem("segnet-api-key")) showError(err.message);
      setStatus("", "locked");
      return;
    }
    showError(err.message);
    setStatus("", "error");
    return;
  }
  $("keyform").hidden = true;
  const model = state.info.model;
  const name = [model.variant, model.backbone].filter(Boolean).join(" · ");
  $("model").textContent = `${name || "model"} on ${model.backend}, ${state.info.classes.length} classes`;
  const limits = state.info.limits;
  $("limits").textContent =
    `up to ${limits.max_upload_mb} MB and ${(limits.max_pixels / 1e6).toFixed(0)} megapixels`;
  setStatus("", "ready");
}

function colourIndex() {
  const index = new Map();
  state.info.palette.forEach(([r, g, b], i) => index.set((r << 16) | (g << 8) | b, i));
  return index;
}

// Class index per pixel from the palette PNG the server sent (its colours are the palette's).
async function decodeLabels(blob) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const lookup = colourIndex();
  const labels = new Uint8Array(bitmap.width * bitmap.height);
  for (let p = 0, q = 0; p < labels.length; p++, q += 4) {
    const i = lookup.get((rgba[q] << 16) | (rgba[q + 1] << 8) | rgba[q + 2]);
    labels[p] = i === undefined ? 255 : i;
  }
  return { width: bitmap.width, height: bitmap.height, data: labels };
}

function draw() {
  const { labels, photo, info } = state;
  if (!labels) return;
  const view = $("view");
  view.width = labels.width;
  view.height = labels.height;
  const ctx = view.getContext("2d");
  ctx.drawImage(photo, 0, 0, labels.width, labels.height);
  const mask = new ImageData(labels.width, labels.height);
  const palette = info.palette;
  for (let p = 0, q = 0; p < labels.data.length; p++, q += 4) {
    const i = labels.data[p];
    if (i >= palette.length || state.hidden.has(i)) continue;
    mask.data[q] = palette[i][0];
    mask.data[q + 1] = palette[i][1];
    mask.data[q + 2] = palette[i][2];
    mask.data[q + 3] = 255;
  }
  const layer = new OffscreenCanvas(labels.width, labels.height);
  layer.getContext("2d").putImageData(mask, 0, 0);
  ctx.globalAlpha = $("opacity").value / 100;
  ctx.drawImage(layer, 0, 0);
  ctx.globalAlpha = 1;
}

function legend() {
  const { labels, info } = state;
  const counts = new Map();
  for (const i of labels.data) counts.set(i, (counts.get(i) || 0) + 1);
  const rows = [...counts].sort((a, b) => b[1] - a[1]);
  const list = $("legend");
  list.replaceChildren();
  for (const [index, count] of rows) {
    const share = count / labels.data.length;
    const colour = index < info.palette.length ? `rgb(${info.palette[index].join(",")})` : "#e0e0c0";
    const li = document.createElement("li");
    li.dataset.class = info.classes[index] ?? String(index);
    li.dataset.share = share.toFixed(6);
    li.title = `${count} pixels`;
    li.innerHTML = '<span class="swatch"></span><span class="name"></span><span class="share"></span>' +
      '<span class="bar"><span></span></span>';
    li.querySelector(".swatch").style.background = colour;
    li.querySelector(".name").textContent = li.dataset.class;
    li.querySelector(".share").textContent = `${(100 * share).toFixed(share < 0.001 ? 2 : 1)}%`;
    const bar = li.querySelector(".bar span");
    bar.style.width = `${Math.max(1, 100 * share)}%`;
    bar.style.background = colour;
    li.classList.toggle("off", state.hidden.has(index));
    li.addEventListener("click", () => {
      state.hidden.has(index) ? state.hidden.delete(index) : state.hidden.add(index);
      li.classList.toggle("off");
      draw();
    });
    list.append(li);
  }
}

function timing(serverTiming, roundTrip) {
  const rows = [["round trip", roundTrip]];
  for (const part of (serverTiming || "").split(",")) {
    const [name, dur] = part.trim().split(";dur=");
    if (name && dur) rows.push([name, Number(dur)]);
  }
  $("timing").replaceChildren(...rows.map(([name, ms]) => {
    const row = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
    row.append(dt, dd);
    return row;
  }));
}

function baseName(file) {
  return (file.name || "image").replace(/\.[^.]*$/, "") || "image";
}

function upload(format) {
  const body = new FormData();
  body.append("image", state.file);
  return api(`/v1/segment?format=${format}`, { method: "POST", body });
}

async function segment(file) {
  if (!state.info) return;
  showError("");
  state.file = file;
  setStatus(`Segmenting ${file.name}…`, "busy");
  const started = performance.now();
  let response, photo;
  try {
    [response, photo] = await Promise.all([upload("png"), createImageBitmap(file).catch(() => null)]);
    state.png = await response.blob();
    state.labels = await decodeLabels(state.png);
  } catch (err) {
    showError(err.message);
    setStatus("", "error");
    return;
  }
  const roundTrip = performance.now() - started;
  state.photo = photo || (await createImageBitmap(state.png));
  state.hidden.clear();
  $("result").hidden = false;
  $("drop").classList.add("compact");
  draw();
  legend();
  timing(response.headers.get("Server-Timing"), roundTrip);
  const link = $("dl-png");
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(state.png);
  link.download = `${baseName(file)}.png`;
  setStatus(`${file.name}: ${state.labels.width} × ${state.labels.height}`, "done");
}

async function downloadOverlay() {
  const button = $("dl-overlay");
  button.disabled = true;
  showError("");
  try {
    const blob = await (await upload("overlay")).blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${baseName(state.file)}_overlay.jpg`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (err) {
    showError(err.message);
  } finally {
    button.disabled = false;
  }
}

function setup() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => e.target.files[0] && segment(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) segment(file);
  });
  $("opacity").addEventListener("input", (e) => {
    $("opacity-value").textContent = `${e.target.value}%`;
    draw();
  });
  $("dl-overlay").addEventListener("click", downloadOverlay);
  $("keyform").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("segnet-api-key", $("key").value.trim());
    loadInfo();
  });
  loadInfo();
}

setup();
