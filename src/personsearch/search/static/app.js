// personsearch search page: pick or upload an image, drag a box, see ranked hits.
//
// The page reports what it is doing as data attributes on <body> (for tests and scripts, which
// wait on them instead of on timing):
//   data-info, data-gallery  "loading" -> "ready" | "error"
//   data-query               "none" | "loading" | "ready" | "error"; data-query-source "image:ID" | "upload:ID"
//   data-search              state of the latest search: "idle" | "running" | "done" | "error"
//   data-searches            how many searches were started (a newer search supersedes an older one)
//   data-photo-box           after a photo search: which box of the photo was used (box_source)
// Each result card carries data-person-id, and for a video frame data-video and data-time-code.
"use strict";

const state = { source: null, image: null, scale: 1, drag: null, box: null, offset: 0, searchSeq: 0, querySeq: 0 };
const pageState = document.body.dataset;
pageState.info = "loading";
pageState.gallery = "loading";
pageState.query = "none";
pageState.search = "idle";
pageState.searches = "0";
const canvas = document.getElementById("query-canvas");
const ctx = canvas.getContext("2d");
const statusLine = document.getElementById("status");

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.className = isError ? "error" : "";
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`cannot load ${url}`));
    image.src = url;
  });
}

async function loadInfo() {
  const info = await api("/api/info");
  document.getElementById("info").textContent =
    `${info.images} images, ` + (info.videos ? `${info.videos} videos (${info.video_frames} frames), ` : "") +
    `${info.persons} persons, ${info.index_type} index, model ${info.fingerprint}` +
    (info.box_queries ? "" : " (no model loaded: click a detected person to search)");
  pageState.info = "ready";
}

async function loadGallery() {
  const data = await api(`/api/images?offset=${state.offset}&limit=60`);
  const gallery = document.getElementById("gallery");
  for (const entry of data.images) {
    const thumb = document.createElement("img");
    thumb.className = "thumb";
    thumb.src = `/api/images/${entry.id}?max=200`;
    thumb.title = `${entry.video ? `${entry.video} at ${entry.time_code}` : entry.name} (${entry.persons} persons)`;
    thumb.dataset.imageId = entry.id;
    thumb.addEventListener("click", () => {
      document.querySelectorAll(".thumb.selected").forEach((t) => t.classList.remove("selected"));
      thumb.classList.add("selected");
      selectSource({ image_id: entry.id }, `/api/images/${entry.id}`, entry.id);
    });
    gallery.appendChild(thumb);
  }
  state.offset += data.images.length;
  document.getElementById("more").hidden = state.offset >= data.total || data.images.length === 0;
  pageState.gallery = "ready";
}

async function selectSource(source, url, imageId = null, box = null) {
  const mine = ++state.querySeq;  // a later pick supersedes this one
  pageState.query = "loading";
  pageState.querySource = source.image_id !== undefined ? `image:${source.image_id}` : `upload:${source.upload_id}`;
  state.image = null;  // no box can be drawn until the new image is shown
  try {
    const image = await loadImage(url);
    const persons = imageId !== null ? (await api(`/api/images/${imageId}/persons`)).persons : [];
    if (mine !== state.querySeq) return false;
    Object.assign(state, { source, box, persons, image });
    document.getElementById("photo-search").hidden = source.upload_id === undefined;
    state.scale = Math.min(480 / image.width, 360 / image.height);
    canvas.width = Math.round(image.width * state.scale);
    canvas.height = Math.round(image.height * state.scale);
    draw();
    setStatus(box ? "" : "Drag a box around a person (or click a dashed detection).");
    pageState.query = "ready";
    return true;
  } catch (error) {
    if (mine === state.querySeq) {
      pageState.query = "error";
      setStatus(error.message, true);
    }
    return false;
  }
}

function draw() {
  if (!state.image) return;
  ctx.drawImage(state.image, 0, 0, canvas.width, canvas.height);
  ctx.setLineDash([4, 3]);
  ctx.strokeStyle = "rgba(255,255,255,0.8)";
  ctx.lineWidth = 1;
  for (const person of state.persons || []) {
    const [x1, y1, x2, y2] = person.box.map((v) => v * state.scale);
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
  }
  ctx.setLineDash([]);
  const box = state.drag ? dragBox() : state.box;
  if (box) {
    const [x1, y1, x2, y2] = box.map((v) => v * state.scale);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 4;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.strokeStyle = "#1e90ff";
    ctx.lineWidth = 2;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
  }
}

function imagePoint(event) {
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * (canvas.width / rect.width) / state.scale;
  const y = (event.clientY - rect.top) * (canvas.height / rect.height) / state.scale;
  return [Math.max(0, Math.min(state.image.width, x)), Math.max(0, Math.min(state.image.height, y))];
}

function dragBox() {
  const [ax, ay] = state.drag.start, [bx, by] = state.drag.end;
  return [Math.min(ax, bx), Math.min(ay, by), Math.max(ax, bx), Math.max(ay, by)];
}

canvas.addEventListener("mousedown", (event) => {
  if (!state.image) return;
  const point = imagePoint(event);
  state.drag = { start: point, end: point };
});
canvas.addEventListener("mousemove", (event) => {
  if (!state.drag) return;
  state.drag.end = imagePoint(event);
  draw();
});
window.addEventListener("mouseup", (event) => {
  if (!state.drag) return;
  state.drag.end = imagePoint(event);
  const box = dragBox();
  state.drag = null;
  if (box[2] - box[0] < 3 || box[3] - box[1] < 3) {
    const [x, y] = box;  // a click: pick the detected person under it, if any
    const person = (state.persons || []).find((p) => x >= p.box[0] && x <= p.box[2] && y >= p.box[1] && y <= p.box[3]);
    if (person) {
      state.box = person.box;
      draw();
      search({ person_id: person.person_id });
    }
    draw();
    return;
  }
  state.box = box.map((v) => Math.round(v * 10) / 10);
  draw();
  search({ ...state.source, box: state.box });
});

async function search(query) {
  const body = { ...query, top: Number(document.getElementById("top").value) || 10,
                 weighting: document.getElementById("cosine").checked ? "cosine" : "score" };
  const mine = ++state.searchSeq;  // a later search supersedes this one
  pageState.searches = String(mine);
  pageState.search = "running";
  setStatus("searching…");
  try {
    const result = await api("/api/search", { method: "POST", headers: { "Content-Type": "application/json" },
                                               body: JSON.stringify(body) });
    if (mine !== state.searchSeq) return;
    const photo = (result.query.photos || [])[0];
    if (photo) {  // show the box the server used on the photo
      state.box = photo.box;
      draw();
      pageState.photoBox = photo.box_source;
    }
    await showResults(result.hits, () => mine !== state.searchSeq);
    if (mine !== state.searchSeq) return;
    setStatus(`${result.hits.length} hits` + (photo ? ` (photo box: ${photo.box_source})` : ""));
    pageState.search = "done";
  } catch (error) {
    if (mine !== state.searchSeq) return;
    setStatus(error.message, true);
    pageState.search = "error";
  }
}

async function showResults(hits, superseded) {
  const results = document.getElementById("results");
  results.innerHTML = "";
  for (const hit of hits) {
    if (superseded()) return;
    const card = document.createElement("div");
    card.className = "hit";
    card.dataset.personId = hit.person_id;
    const hitCanvas = document.createElement("canvas");
    const caption = document.createElement("div");
    if (hit.video) {  // a video frame: the video's name and the time code
      card.dataset.video = hit.video;
      card.dataset.timeCode = hit.time_code;
      caption.textContent = `#${hit.rank}  ${hit.similarity.toFixed(3)}  ${hit.video}  ${hit.time_code}`;
    } else {
      caption.textContent = `#${hit.rank}  ${hit.similarity.toFixed(3)}  ${hit.image}`;
    }
    card.append(hitCanvas, caption);
    card.title = "search with this person";
    card.addEventListener("click", async () => {
      if (await selectSource({ image_id: hit.image_id }, `/api/images/${hit.image_id}`, hit.image_id, hit.box)) {
        search({ person_id: hit.person_id });
      }
    });
    results.appendChild(card);
    const image = await loadImage(`/api/images/${hit.image_id}`);
    const scale = Math.min(220 / image.width, 200 / image.height);
    hitCanvas.width = Math.round(image.width * scale);
    hitCanvas.height = Math.round(image.height * scale);
    const hctx = hitCanvas.getContext("2d");
    hctx.drawImage(image, 0, 0, hitCanvas.width, hitCanvas.height);
    const [x1, y1, x2, y2] = hit.box.map((v) => v * scale);
    hctx.strokeStyle = "#000";  // dark outline + bright box: visible on any colour
    hctx.lineWidth = 5;
    hctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    hctx.strokeStyle = "#ffd400";
    hctx.lineWidth = 2.5;
    hctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
  }
}

document.getElementById("upload").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  const mine = ++state.querySeq;  // picking another image meanwhile supersedes the upload
  pageState.query = "loading";
  pageState.querySource = "upload";
  setStatus("uploading…");
  try {
    // raw bytes with the file's image type (the server accepts image/* and application/octet-stream)
    const type = file.type.startsWith("image/") ? file.type : "application/octet-stream";
    const uploaded = await api("/api/uploads", { method: "POST", headers: { "Content-Type": type }, body: file });
    if (mine !== state.querySeq) return;
    await selectSource({ upload_id: uploaded.upload_id }, `/api/uploads/${uploaded.upload_id}`);
  } catch (error) {
    if (mine !== state.querySeq) return;
    pageState.query = "error";
    setStatus(error.message, true);
  }
});
document.getElementById("more").addEventListener("click", loadGallery);
document.getElementById("photo-search").addEventListener("click", () => {
  if (state.source && state.source.upload_id !== undefined) search({ photo_upload_ids: [state.source.upload_id] });
});

loadInfo().catch((error) => { pageState.info = "error"; setStatus(error.message, true); });
loadGallery().catch((error) => { pageState.gallery = "error"; setStatus(error.message, true); });
