// The page of `gpuanalogy serve`: plain JavaScript over the HTTP API (see the README).
// The settings form and the region files' fields are built from GET /api/options (the
// options table); B' takes one image or several (exemplars). A job's progress,
// level previews and end come as server-sent events from GET /api/jobs/{id}/events.
"use strict";

const state = {
  options: null,          // GET /api/options
  files: {a: null, b_prime: null},   // a File; B' a list of Files (one per exemplar)
  inputs: {},             // job id -> {a: object URL, b_prime: object URL} of jobs sent from here
  shown: null,            // the job on view
  source: null,           // its EventSource
};

const $ = (selector) => document.querySelector(selector);

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function duration(seconds) {
  const total = Math.round(seconds);
  const minutes = Math.floor(total / 60);
  return `${minutes}:${String(total % 60).padStart(2, "0")}`;
}

async function api(path, init) {
  const response = await fetch(path, init);
  const body = response.status === 204 ? {} : await response.json();
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

// The settings form --------------------------------------------------------------------

function shownValue(value) {
  if (value === true) return "on";
  if (value === false) return "off";
  return String(value);
}

function buildFileFields(options) {
  // The input files of the options table (region masks): plain file choosers.
  for (const spec of options.files) {
    if (spec.name === "a" || spec.name === "b_prime") continue;
    const input = element("input", {type: "file", name: spec.name, id: `file-${spec.name}`});
    if (spec.multiple) input.multiple = true;
    $("#file-fields").append(element("label", {title: spec.help},
      [element("span", {text: spec.name.replace(/_/g, " ") +
                              (spec.multiple ? " (one per B\u2032)" : "")}), input]));
  }
}

function buildForm(options) {
  buildFileFields(options);
  const fields = $("#option-fields");
  for (const option of options.options) {
    let input;
    if (option.choices.length || option.type === "bool") {
      input = element("select", {name: option.name, id: `option-${option.name}`});
      input.append(element("option", {value: "", class: "inherited"}));
      const choices = option.type === "bool" ? ["true", "false"] : option.choices;
      for (const choice of choices) {
        input.append(element("option", {value: String(choice),
                                        text: shownValue(choice === "true" ? true :
                                                         choice === "false" ? false : choice)}));
      }
    } else {
      input = element("input", {name: option.name, id: `option-${option.name}`,
                                type: option.type === "str" ? "text" : "number",
                                step: option.type === "int" ? "1" : "any"});
    }
    const label = element("label", {title: option.help},
                          [element("span", {text: option.name.replace(/_/g, " ")}), input]);
    fields.append(label);
  }
  $("#option-preset").addEventListener("change", showInherited);
  $("#option-preset").querySelector(".inherited").textContent = "none (the defaults)";
  showInherited();
  const limits = options.limits;
  $("#limits").textContent = `up to ${(limits.max_upload_bytes / 2 ** 20).toFixed(0)} MiB ` +
    `and ${(limits.max_pixels / 1e6).toFixed(1)} megapixels an image; files kept ` +
    `${Math.round(limits.keep_seconds / 60)} minutes`;
  $("#server").textContent = `Server: gpuanalogy ${options.version} on ${options.device}.`;
}

function showInherited() {
  // What an empty field means: the chosen preset's value, or the default.
  const preset = $("#option-preset").value;
  const values = preset ? state.options.presets[preset] : state.options.defaults;
  const from = preset ? preset : "default";
  for (const option of state.options.options) {
    if (option.name === "preset") continue;
    const input = document.getElementById(`option-${option.name}`);
    const text = `${shownValue(values[option.name])} (${from})`;
    if (input.tagName === "SELECT") input.querySelector(".inherited").textContent = text;
    else input.placeholder = text;
  }
}

function chooseFile(field, chosen) {
  const files = Array.from(chosen || []);
  if (!files.length) return;
  const file = files[0];
  state.files[field] = field === "b_prime" ? files : file;
  const box = document.getElementById(`drop-${field}`);
  const image = box.querySelector("img");
  if (image.src) URL.revokeObjectURL(image.src);
  image.src = URL.createObjectURL(file);   // the first exemplar stands for them all
  image.hidden = false;
  const shown = field === "b_prime" ? files : [file];
  box.querySelector(".name").textContent = shown.map(
    (f) => `${f.name} (${Math.ceil(f.size / 1024)} KiB)`).join(", ");
}

function wireDrops() {
  for (const field of ["a", "b_prime"]) {
    const box = document.getElementById(`drop-${field}`);
    document.getElementById(`file-${field}`).addEventListener(
      "change", (event) => chooseFile(field, event.target.files));
    box.addEventListener("dragover", (event) => { event.preventDefault(); box.classList.add("over"); });
    box.addEventListener("dragleave", () => box.classList.remove("over"));
    box.addEventListener("drop", (event) => {
      event.preventDefault();
      box.classList.remove("over");
      chooseFile(field, event.dataTransfer.files);
    });
  }
}

async function start(event) {
  event.preventDefault();
  $("#error").textContent = "";
  if (!state.files.a || !state.files.b_prime) {
    $("#error").textContent = "choose both images first (A and B')";
    return;
  }
  const form = new FormData();
  form.append("a", state.files.a, state.files.a.name);
  for (const file of state.files.b_prime) form.append("b_prime", file, file.name);
  for (const input of $("#file-fields").querySelectorAll("input")) {
    for (const file of input.files) form.append(input.name, file, file.name);
  }
  for (const input of $("#option-fields").querySelectorAll("input, select")) {
    if (input.value !== "") form.append(input.name, input.value);
  }
  form.append("save_levels", $("#save-levels").checked ? "true" : "false");
  $("#start").disabled = true;
  try {
    const job = await api("/api/jobs", {method: "POST", body: form});
    state.inputs[job.id] = {a: URL.createObjectURL(state.files.a),
                            b_prime: URL.createObjectURL(state.files.b_prime[0])};
    await refreshQueue();
    show(job.id);
  } catch (error) {
    $("#error").textContent = error.message;
  } finally {
    $("#start").disabled = false;
  }
}

// The queue ----------------------------------------------------------------------------

function stateText(job) {
  if (job.state === "queued") return job.position === 0 ? "next" : `waiting (${job.position} ahead)`;
  if (job.state === "running" && job.cancelling) return "cancelling";
  if (job.state === "running" && job.progress) {
    return `running: ${Math.round(100 * job.progress.done / job.progress.total)} %`;
  }
  return job.state;
}

async function refreshQueue() {
  let jobs;
  try {
    jobs = (await api("/api/jobs")).jobs;
  } catch (error) {
    return;   // the server is gone or busy; the next poll tries again
  }
  const list = $("#jobs");
  list.replaceChildren();
  $("#no-jobs").hidden = jobs.length > 0;
  for (const job of jobs) {
    const item = element("li", {class: "job", "data-id": job.id, "data-state": job.state});
    if (job.id === state.shown) item.classList.add("shown");
    const view = element("button", {type: "button", class: "link",
                                    text: `${job.names.a} \u00d7 ` +
                                          [].concat(job.names.b_prime).join(" + ")});
    view.addEventListener("click", () => show(job.id));
    item.append(view, element("span", {class: "state", text: stateText(job)}));
    if (job.state === "queued" || job.state === "running") {
      const cancel = element("button", {type: "button", class: "cancel", text: "Cancel"});
      cancel.addEventListener("click", () => cancelJob(job.id));
      item.append(cancel);
    }
    list.append(item);
  }
}

async function cancelJob(id) {
  try {
    await api(`/api/jobs/${id}/cancel`, {method: "POST"});
  } catch (error) {
    $("#error").textContent = error.message;
  }
  refreshQueue();
}

// One job ------------------------------------------------------------------------------

function show(id) {
  if (state.source) state.source.close();
  state.shown = id;
  $("#job").hidden = false;
  $("#job-title").textContent = `Job ${id}`;
  $("#job-state").textContent = "";
  delete $("#job-state").dataset.state;
  $("#job-error").textContent = "";
  $("#stage").textContent = "";
  $("#eta").textContent = "";
  $("#bar").value = 0;
  $("#notices").replaceChildren();
  $("#levels").replaceChildren();
  $("#results").hidden = true;
  $("#cancel").hidden = false;
  $("#cancel").onclick = () => cancelJob(id);
  for (const item of document.querySelectorAll("#jobs .job")) {
    item.classList.toggle("shown", item.dataset.id === id);
  }
  const source = new EventSource(`/api/jobs/${id}/events`);
  state.source = source;
  const data = (event) => JSON.parse(event.data);
  source.addEventListener("state", (event) => onState(id, data(event)));
  source.addEventListener("progress", (event) => onProgress(data(event)));
  source.addEventListener("level", (event) => onLevel(id, data(event).level));
  source.addEventListener("notice", (event) => {
    $("#notices").append(element("li", {text: data(event).text}));
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) state.source = null;
  };
}

function onState(id, event) {
  const box = $("#job-state");
  box.dataset.state = event.state;
  box.textContent = event.state === "queued" ?
    (event.position ? `waiting (${event.position} ahead)` : "waiting (next)") : event.state;
  if (event.state === "done" || event.state === "failed" || event.state === "cancelled") {
    state.source && state.source.close();
    state.source = null;
    $("#cancel").hidden = true;
    $("#eta").textContent = "";
    if (event.state === "done") {
      $("#bar").value = 1;
      $("#stage").textContent = `finished in ${duration(event.seconds)}`;
      showResults(id, event.files);
    }
    if (event.error) $("#job-error").textContent = event.error;
    refreshQueue();
  }
}

function onProgress(progress) {
  $("#bar").value = progress.done / progress.total;
  const where = progress.level ? `level ${progress.level}: ` : "";
  $("#stage").textContent = `${where}${progress.stage} (step ${progress.done + 1} of ` +
    `${progress.total}), ${duration(progress.elapsed)} so far`;
  $("#eta").textContent = progress.eta === null ? "" : `about ${duration(progress.eta)} left`;
}

function figure(label, src, id) {
  const attributes = id ? {id} : {};
  return element("figure", attributes, [element("img", {src, alt: label}),
                                        element("figcaption", {text: label})]);
}

function onLevel(id, level) {
  const base = `/api/jobs/${id}/levels/${level}`;
  const row = element("div", {class: "level", "data-level": String(level)}, [
    element("h4", {text: `level ${level}`}),
    figure(`A\u2032 at level ${level}`, `${base}/a_prime.png`),
    figure(`B at level ${level}`, `${base}/b.png`),
  ]);
  $("#levels").append(row);
}

function showResults(id, files) {
  const gallery = $("#result-images");
  gallery.replaceChildren();
  const inputs = state.inputs[id];
  if (inputs) gallery.append(figure("A", inputs.a), figure("B\u2032", inputs.b_prime));
  const file = (name) => `/api/jobs/${id}/files/${name}`;
  const shown = [["a_prime.png", "A\u2032"], ["b.png", "B"],
                 ["a_prime_refined.png", "A\u2032 refined"], ["b_refined.png", "B refined"],
                 ["nnf_ab.png", "NNF A \u2192 B\u2032"], ["nnf_ba.png", "NNF B\u2032 \u2192 A"],
                 ["nnf_ab_exemplar.png", "exemplar of each match"]];
  for (const name of files) {   // several exemplars: b_1.png, b_1_refined.png, ...
    const numbered = name.match(/^b_(\d+)(_refined)?\.png$/);
    if (numbered) shown.push([name, `B${numbered[2] ? " refined" : ""} (B\u2032 ${numbered[1]})`]);
  }
  for (const [name, label] of shown) {
    if (files.includes(name)) gallery.append(figure(label, file(name), `result-${name.split(".")[0]}`));
  }
  $("#download").href = `/api/jobs/${id}/zip`;
  const links = $("#files");
  links.replaceChildren("files: ");
  for (const name of files) {
    links.append(element("a", {href: file(name), text: name}), " ");
  }
  $("#results").hidden = false;
}

// Start --------------------------------------------------------------------------------

async function main() {
  wireDrops();
  $("#settings").addEventListener("submit", start);
  try {
    state.options = await api("/api/options");
    buildForm(state.options);
  } catch (error) {
    $("#error").textContent = `cannot reach the server: ${error.message}`;
  }
  await refreshQueue();
  setInterval(refreshQueue, 1000);
}

main();
