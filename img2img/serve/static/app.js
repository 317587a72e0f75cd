// img2img front end: queues image jobs on the local server, follows their
// progress, and compares each result with its input.

const POLL_INTERVAL_MS = 400;
const MAX_POLL_FAILURES = 5;
const UNDO_LIMIT = 20;
const FIT_HEIGHT_SHARE = 0.75; // "Fit" leaves room on screen for the toolbar above the picture
const MASK_STROKE_COLOR = '#ff0000'; // drawn opaque; the canvas's CSS opacity makes it see-through
const FINISHED_STATUSES = new Set(['done', 'failed', 'cancelled']);

const byId = (id) => document.getElementById(id);

const ui = {
  task: byId('task'),
  model: byId('model'),
  modelHelp: byId('model-help'),
  noModel: byId('no-model'),
  tile: byId('tile'),
  preserveColor: byId('preserve-color'),
  maskFromAlpha: byId('mask-from-alpha'),
  seeds: byId('seeds'),
  truncation: byId('truncation'),
  truncationValue: byId('truncation-value'),
  labelField: byId('label-field'),
  label: byId('label'),
  columns: byId('columns'),
  morph: byId('morph'),
  morphSteps: byId('morph-steps'),
  styleImagesField: byId('style-images-field'),
  styleImages: byId('style-images'),
  styleWeights: byId('style-weights'),
  styleAlpha: byId('style-alpha'),
  styleAlphaValue: byId('style-alpha-value'),
  dropZone: byId('drop-zone'),
  fileInput: byId('file-input'),
  fileSummary: byId('file-summary'),
  run: byId('run'),
  error: byId('error'),
  jobs: byId('jobs'),
  jobsEmpty: byId('jobs-empty'),
  jobTemplate: byId('job-template'),
  brushSize: byId('brush-size'),
  brushSizeValue: byId('brush-size-value'),
  eraser: byId('eraser'),
  undo: byId('undo'),
  clearMask: byId('clear-mask'),
  editorEmpty: byId('editor-empty'),
  canvasStack: byId('canvas-stack'),
  photoCanvas: byId('photo-canvas'),
  maskCanvas: byId('mask-canvas'),
  resultEmpty: byId('result-empty'),
  resultView: byId('result-view'),
  zoom: byId('zoom'),
  sideBySide: byId('side-by-side'),
  downloadFormat: byId('download-format'),
  download: byId('download'),
  paintAgain: byId('paint-again'),
  compareViewport: byId('compare-viewport'),
  compare: byId('compare'),
  inputImage: byId('input-image'),
  resultImage: byId('result-image'),
  compareSlider: byId('compare-slider'),
};

// Undo snapshots read the mask back often, so ask for a CPU-side canvas.
const maskContext = ui.maskCanvas.getContext('2d', { willReadFrequently: true });

let models = [];
let limits = {};
let chosenFiles = [];
const jobs = new Map();
let shownJob = null;
const editor = { photoFile: null, erasing: false, lastPoint: null, undoStack: [] };

// ---------------------------------------------------------------- server

async function errorFromResponse(response) {
  const body = await response.json().catch(() => null);
  return new Error(body?.error ?? `The server answered ${response.status} ${response.statusText}.`);
}

async function requestJson(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch {
    throw new Error('Cannot reach the img2img server.');
  }
  if (!response.ok) throw await errorFromResponse(response);
  return response.json();
}

// A face morph is an animation: it comes as GIF whatever format is asked for elsewhere.
function resultUrl(job, format) {
  const chosen = job.animated ? 'gif' : format;
  return `/api/jobs/${encodeURIComponent(job.id)}/result?format=${chosen}`;
}

// ---------------------------------------------------------------- messages

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.textContent = '';
  ui.error.hidden = true;
}

function formatBytes(bytes) {
  return bytes >= 1024 ** 2 ? `${Math.round(bytes / 1024 ** 2)} MB` : `${Math.round(bytes / 1024)} KB`;
}

function formatEta(seconds) {
  if (seconds == null) return '';
  if (seconds < 1) return 'almost done';
  const whole = Math.ceil(seconds);
  if (whole < 60) return `about ${whole} s left`;
  return `about ${Math.floor(whole / 60)} min ${whole % 60} s left`;
}

function fileStem(name) {
  return name.replace(/\.[^.]*$/, '') || 'image';
}

// ---------------------------------------------------------------- task and model

function modelsFor(task) {
  return models.filter((model) => model.task === task);
}

function taskTitle(task) {
  return ui.task.querySelector(`option[value="${task}"]`)?.text ?? task;
}

function selectedModel() {
  return modelsFor(ui.task.value).find((model) => model.name === ui.model.value);
}

function onTaskChange() {
  const task = ui.task.value;
  for (const element of document.querySelectorAll('[data-tasks]')) {
    element.hidden = !element.dataset.tasks.split(' ').includes(task);
  }
  fillModelSelect(task);
  if (task === 'inpaint' && !editor.photoFile && chosenFiles.length > 0) loadEditorPhoto(chosenFiles[0]);
  renderFileSummary();
}

function fillModelSelect(task) {
  const choices = modelsFor(task);
  ui.model.replaceChildren(...choices.map((model) => new Option(model.name, model.name)));
  ui.model.disabled = choices.length === 0;
  ui.run.disabled = choices.length === 0;
  ui.noModel.hidden = choices.length > 0;
  onModelChange();
}

function onModelChange() {
  const model = selectedModel();
  const notes = [model?.use_for, model?.style && `Style: ${model.style}.`];
  ui.modelHelp.textContent = notes.filter(Boolean).join(' ');
  fillLabelSelect(model?.classes ?? []);
  // An arbitrary-style model takes paintings; the data-tasks rule has already shown or hidden
  // the field for the task, this narrows it to such models.
  if (ui.task.value === 'style') ui.styleImagesField.hidden = !model?.takes_style_images;
}

function fillLabelSelect(classes) {
  ui.label.replaceChildren(new Option('Any', ''), ...classes.map((name) => new Option(name, name)));
  ui.labelField.hidden = classes.length === 0;
}

// ---------------------------------------------------------------- chosen files

function acceptFiles(fileList) {
  clearError();
  const files = [...fileList];
  const maxBytes = limits.max_upload_bytes;
  const tooLarge = maxBytes ? files.filter((file) => file.size > maxBytes) : [];
  chosenFiles = files.filter((file) => !tooLarge.includes(file));
  if (tooLarge.length > 0) {
    const names = tooLarge.map((file) => file.name).join(', ');
    showError(`Skipped ${names}: larger than the ${formatBytes(maxBytes)} upload limit.`);
  }
  // New files replace the photo being edited, now or when the user switches to inpaint.
  closeEditorPhoto();
  renderFileSummary();
  if (ui.task.value === 'inpaint' && chosenFiles.length > 0) loadEditorPhoto(chosenFiles[0]);
}

function renderFileSummary() {
  const names = chosenFiles.map((file) => file.name);
  if (ui.task.value === 'inpaint' && editor.photoFile) {
    const note = names.length > 1 ? ' Inpaint edits one photo at a time.' : '';
    ui.fileSummary.textContent = `Editing ${editor.photoFile.name}.${note}`;
  } else if (names.length === 0) {
    ui.fileSummary.textContent = 'No images chosen.';
  } else {
    ui.fileSummary.textContent = names.length === 1 ? names[0] : `${names.length} images: ${names.join(', ')}`;
  }
}

// ---------------------------------------------------------------- submitting jobs

function tileValue() {
  const tile = ui.tile.value.trim().toLowerCase() || 'auto';
  if (tile !== 'auto' && !/^\d+$/.test(tile)) {
    throw new Error('Tile size must be “auto”, 0 for the whole image, or a whole number of pixels.');
  }
  return tile;
}

function imageJobForm(task, model, image) {
  const form = new FormData();
  form.append('image', image, image.name);
  form.append('task', task);
  form.append('model', model);
  form.append('tile', tileValue());
  return form;
}

async function run() {
  clearError();
  const task = ui.task.value;
  const model = ui.model.value;
  ui.run.disabled = true;
  try {
    if (task === 'faces') await submitFaces(model);
    else if (task === 'inpaint') await submitInpaint(model);
    else await submitImages(task, model);
  } catch (error) {
    showError(error.message);
  } finally {
    ui.run.disabled = modelsFor(ui.task.value).length === 0;
  }
}

async function submitImages(task, model) {
  if (chosenFiles.length === 0) throw new Error('Choose one or more images first.');
  const paintings = selectedModel()?.takes_style_images ? Array.from(ui.styleImages.files) : [];
  if (task === 'style' && selectedModel()?.takes_style_images && paintings.length === 0) {
    throw new Error('Add one to four style images (the paintings to render in).');
  }
  const forms = chosenFiles.map((file) => {
    const form = imageJobForm(task, model, file);
    if (task === 'style') {
      form.append('preserve_color', String(ui.preserveColor.checked));
      for (const painting of paintings) form.append('style_image', painting, painting.name);
      if (paintings.length > 0) {
        form.append('alpha', ui.styleAlpha.value);
        if (ui.styleWeights.value.trim()) form.append('style_weights', ui.styleWeights.value.trim());
      }
    }
    return [file, form];
  });
  // One after another, so the jobs queue in the order the files were chosen.
  for (const [file, form] of forms) {
    await submitJob('/api/jobs', form, { task, model, name: file.name, input: file });
  }
}

async function submitInpaint(model) {
  const photo = editor.photoFile;
  if (!photo) throw new Error('Choose a photo to paint on first.');
  const form = imageJobForm('inpaint', model, photo);
  const fromAlpha = ui.maskFromAlpha.checked;
  form.append('mask_from_alpha', String(fromAlpha));
  if (!fromAlpha) {
    if (!maskHasPaint()) throw new Error('Paint over the area to fill first, or tick “Mask from alpha”.');
    form.append('mask', await maskPngBlob(), 'mask.png');
  }
  await submitJob('/api/jobs', form, { task: 'inpaint', model, name: photo.name, input: photo });
}

async function submitFaces(model) {
  const seeds = ui.seeds.value.trim() || '0-7';
  const form = new FormData();
  form.append('model', model);
  form.append('seeds', seeds);
  form.append('truncation', ui.truncation.value);
  if (ui.label.value) form.append('label', ui.label.value);
  if (ui.columns.value && !ui.morph.checked) form.append('columns', ui.columns.value);
  if (ui.morph.checked) form.append('morph_steps', ui.morphSteps.value);
  const name = ui.morph.checked ? `morph ${seeds}` : `faces ${seeds}`;
  await submitJob('/api/faces', form, { task: 'faces', model, name, input: null, animated: ui.morph.checked });
}

async function submitJob(url, form, { task, model, name, input, animated = false }) {
  const accepted = await requestJson(url, { method: 'POST', body: form });
  const job = {
    id: accepted.id,
    task,
    model,
    name,
    animated,
    inputUrl: input ? URL.createObjectURL(input) : null,
    status: accepted.status,
    position: accepted.position,
    progress: null,
    etaSeconds: null,
    error: null,
    result: null,
  };
  job.element = createJobElement(job);
  jobs.set(job.id, job);
  ui.jobs.prepend(job.element);
  ui.jobsEmpty.hidden = true;
  renderJob(job);
  followJob(job);
}

// ---------------------------------------------------------------- following jobs

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function followJob(job) {
  let failures = 0;
  while (!FINISHED_STATUSES.has(job.status)) {
    await sleep(POLL_INTERVAL_MS);
    try {
      applyJobStatus(job, await requestJson(`/api/jobs/${encodeURIComponent(job.id)}`));
      failures = 0;
    } catch (error) {
      // A busy server can drop the odd request; give up only when it keeps failing.
      failures += 1;
      if (failures >= MAX_POLL_FAILURES) {
        applyJobStatus(job, { status: 'failed', error: `Lost track of this job: ${error.message}` });
      }
    }
  }
}

function applyJobStatus(job, update) {
  const previous = job.status;
  job.status = update.status;
  job.position = update.position ?? null;
  job.progress = update.progress ?? null;
  job.etaSeconds = update.eta_seconds ?? null;
  job.error = update.error ?? null;
  job.result = update.result ?? null;
  renderJob(job);
  if (job.status === previous) return;
  if (job.status === 'done') showJob(job);
  if (job.status === 'failed') showError(`${job.name}: ${job.error ?? 'the job failed.'}`);
}

async function cancelJob(job) {
  clearError();
  try {
    applyJobStatus(job, await requestJson(`/api/jobs/${encodeURIComponent(job.id)}/cancel`, { method: 'POST' }));
  } catch (error) {
    showError(error.message);
  }
}

function createJobElement(job) {
  const row = ui.jobTemplate.content.firstElementChild.cloneNode(true);
  row.querySelector('.job-title').textContent = job.name;
  row.querySelector('.job-meta').textContent = `${taskTitle(job.task)} · ${job.model}`;
  const cancel = row.querySelector('.cancel');
  cancel.setAttribute('aria-label', `Cancel ${job.name}`);
  cancel.addEventListener('click', () => cancelJob(job));
  row.addEventListener('click', (event) => {
    if (job.status === 'done' && !cancel.contains(event.target)) showJob(job);
  });
  return row;
}

function describeStatus(job) {
  switch (job.status) {
    case 'queued':
      return job.position > 0 ? `Queued, ${job.position} ahead` : 'Queued, next';
    case 'running':
      return job.progress?.total ? `Running: ${job.progress.done} of ${job.progress.total} tiles` : 'Running';
    case 'done':
      return job.result ? `Done, ${job.result.width} × ${job.result.height}` : 'Done';
    case 'failed':
      return `Failed: ${job.error ?? 'unknown error'}`;
    default:
      return 'Cancelled';
  }
}

function renderJob(job) {
  const row = job.element;
  const finished = FINISHED_STATUSES.has(job.status);
  row.dataset.status = job.status;
  row.querySelector('.job-title').disabled = job.status !== 'done';
  row.querySelector('.job-status').textContent = describeStatus(job);
  row.querySelector('.job-eta').textContent = job.status === 'running' ? formatEta(job.etaSeconds) : '';
  row.querySelector('.cancel').hidden = finished;

  const bar = row.querySelector('.job-progress');
  if (job.progress?.total) {
    bar.max = job.progress.total;
    bar.value = job.progress.done;
  } else if (job.status === 'running') {
    bar.removeAttribute('value'); // indeterminate until the first tile count arrives
  } else {
    bar.max = 1;
    bar.value = job.status === 'done' ? 1 : 0;
  }
  bar.hidden = finished && job.status !== 'done';
}

// ---------------------------------------------------------------- result view

function showJob(job) {
  shownJob = job;
  for (const other of jobs.values()) other.element.classList.toggle('selected', other === job);
  ui.resultEmpty.hidden = true;
  ui.resultView.hidden = false;
  ui.compare.classList.toggle('single', !job.inputUrl);
  if (job.inputUrl) ui.inputImage.src = job.inputUrl;
  else ui.inputImage.removeAttribute('src');
  ui.resultImage.src = resultUrl(job, 'png');
  ui.resultImage.alt = `Result for ${job.name}`;
  ui.paintAgain.disabled = !job.inputUrl;
  updateDownloadLink();
  applyZoom();
}

function updateDownloadLink() {
  const format = shownJob.animated ? 'gif' : ui.downloadFormat.value;
  ui.downloadFormat.disabled = shownJob.animated;
  ui.download.href = resultUrl(shownJob, format);
  ui.download.download = `${fileStem(shownJob.name)}-${shownJob.model}.${format}`;
}

function applyZoom() {
  if (!shownJob?.result) return;
  const { width, height } = shownJob.result;
  const sideBySide = ui.sideBySide.checked && Boolean(shownJob.inputUrl);
  ui.compare.classList.toggle('side-by-side', sideBySide);

  let scale = Number(ui.zoom.value);
  if (ui.zoom.value === 'fit') {
    const panes = sideBySide ? 2 : 1;
    const gap = sideBySide ? parseFloat(getComputedStyle(ui.compare).columnGap) || 0 : 0;
    const availableWidth = ui.compareViewport.clientWidth - gap;
    scale = Math.min(availableWidth / (width * panes), (window.innerHeight * FIT_HEIGHT_SHARE) / height);
  }
  // Both images take the result's displayed size, so a small input is scaled up to match.
  for (const image of [ui.inputImage, ui.resultImage]) {
    image.style.width = `${width * scale}px`;
    image.style.height = `${height * scale}px`;
  }
}

function onCompareSlide() {
  ui.compare.style.setProperty('--split', `${ui.compareSlider.value}%`);
}

async function paintAgainOnResult() {
  const job = shownJob;
  if (!job?.inputUrl) return;
  clearError();
  try {
    const response = await fetch(resultUrl(job, 'png'));
    if (!response.ok) throw await errorFromResponse(response);
    const blob = await response.blob();
    await loadEditorPhoto(new File([blob], `${fileStem(job.name)}-${job.task}.png`, { type: 'image/png' }));
    ui.task.value = 'inpaint';
    onTaskChange();
  } catch (error) {
    showError(error.message);
  }
}

// ---------------------------------------------------------------- inpaint editor

async function loadEditorPhoto(file) {
  const url = URL.createObjectURL(file);
  try {
    const image = new Image();
    image.src = url;
    await image.decode();
    // The mask gets the photo's pixel size; resizing a canvas also clears it.
    for (const canvas of [ui.photoCanvas, ui.maskCanvas]) {
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
    }
    ui.photoCanvas.getContext('2d').drawImage(image, 0, 0);
    editor.photoFile = file;
    editor.undoStack = [];
    ui.editorEmpty.hidden = true;
    ui.canvasStack.hidden = false;
    fitEditor();
    updateUndoButton();
    renderFileSummary();
  } catch {
    showError(`${file.name} could not be opened as an image.`);
  } finally {
    URL.revokeObjectURL(url);
  }
}

// The photo as large as the panel and the screen allow, enlarged when it is small, so that
// painting a small photo is not a matter of single screen pixels.
function fitEditor() {
  const { width, height } = ui.photoCanvas;
  if (ui.canvasStack.hidden || !width) return;
  const available = ui.canvasStack.parentElement.clientWidth;
  const scale = Math.min(available / width, (window.innerHeight * FIT_HEIGHT_SHARE) / height);
  ui.canvasStack.style.width = `${Math.floor(width * scale)}px`;
}

function closeEditorPhoto() {
  editor.photoFile = null;
  editor.undoStack = [];
  ui.editorEmpty.hidden = false;
  ui.canvasStack.hidden = true;
  updateUndoButton();
}

// Pointer position in photo pixels, and photo pixels per CSS pixel at the moment.
function photoPoint(event) {
  const box = ui.maskCanvas.getBoundingClientRect();
  const scale = ui.maskCanvas.width / box.width;
  return { x: (event.clientX - box.left) * scale, y: (event.clientY - box.top) * scale, scale };
}

function paintSegment(from, to) {
  maskContext.globalCompositeOperation = editor.erasing ? 'destination-out' : 'source-over';
  maskContext.strokeStyle = MASK_STROKE_COLOR;
  // The slider is in screen pixels, so the brush feels the same however large the photo is.
  maskContext.lineWidth = Number(ui.brushSize.value) * to.scale;
  maskContext.lineCap = 'round';
  maskContext.lineJoin = 'round';
  maskContext.beginPath();
  maskContext.moveTo(from.x, from.y);
  maskContext.lineTo(to.x, to.y);
  maskContext.stroke();
}

function startStroke(event) {
  if (!editor.photoFile || event.button !== 0) return;
  event.preventDefault();
  ui.maskCanvas.setPointerCapture(event.pointerId);
  pushUndoState();
  editor.lastPoint = photoPoint(event);
  paintSegment(editor.lastPoint, editor.lastPoint); // a click alone paints a dot
}

function continueStroke(event) {
  if (!editor.lastPoint) return;
  const point = photoPoint(event);
  paintSegment(editor.lastPoint, point);
  editor.lastPoint = point;
}

function endStroke() {
  editor.lastPoint = null;
}

function pushUndoState() {
  const { width, height } = ui.maskCanvas;
  editor.undoStack.push(maskContext.getImageData(0, 0, width, height));
  // Snapshots of a large photo are big, so only the most recent ones are kept.
  if (editor.undoStack.length > UNDO_LIMIT) editor.undoStack.shift();
  updateUndoButton();
}

function undo() {
  const state = editor.undoStack.pop();
  if (state) maskContext.putImageData(state, 0, 0);
  updateUndoButton();
}

function clearMask() {
  if (!editor.photoFile) return;
  pushUndoState();
  maskContext.clearRect(0, 0, ui.maskCanvas.width, ui.maskCanvas.height);
}

function updateUndoButton() {
  ui.undo.disabled = editor.undoStack.length === 0;
}

function toggleEraser() {
  editor.erasing = !editor.erasing;
  ui.eraser.setAttribute('aria-pressed', String(editor.erasing));
  ui.canvasStack.classList.toggle('erasing', editor.erasing);
}

function maskHasPaint() {
  const { width, height } = ui.maskCanvas;
  const pixels = maskContext.getImageData(0, 0, width, height).data;
  for (let alpha = 3; alpha < pixels.length; alpha += 4) {
    if (pixels[alpha] !== 0) return true;
  }
  return false;
}

// The server wants black everywhere and white where the user painted.
function maskPngBlob() {
  const mask = document.createElement('canvas');
  mask.width = ui.maskCanvas.width;
  mask.height = ui.maskCanvas.height;
  const context = mask.getContext('2d');
  context.drawImage(ui.maskCanvas, 0, 0);
  context.globalCompositeOperation = 'source-in'; // painted pixels turn white
  context.fillStyle = '#fff';
  context.fillRect(0, 0, mask.width, mask.height);
  context.globalCompositeOperation = 'destination-over'; // the rest turns black
  context.fillStyle = '#000';
  context.fillRect(0, 0, mask.width, mask.height);
  return new Promise((resolve, reject) => {
    mask.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('Could not encode the mask.'))), 'image/png');
  });
}

// ---------------------------------------------------------------- wiring

function bindDropZone() {
  // Swallow drops that miss the zone, so a stray drop does not navigate away from the page.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => event.preventDefault());
  ui.dropZone.addEventListener('dragover', (event) => {
    event.preventDefault();
    ui.dropZone.classList.add('dragging');
  });
  ui.dropZone.addEventListener('dragleave', () => ui.dropZone.classList.remove('dragging'));
  ui.dropZone.addEventListener('drop', (event) => {
    event.preventDefault();
    ui.dropZone.classList.remove('dragging');
    acceptFiles(event.dataTransfer.files);
  });
  ui.fileInput.addEventListener('change', () => acceptFiles(ui.fileInput.files));
}

function bindControls() {
  ui.task.addEventListener('change', onTaskChange);
  ui.model.addEventListener('change', onModelChange);
  ui.run.addEventListener('click', run);
  ui.truncation.addEventListener('input', () => {
    ui.truncationValue.textContent = Number(ui.truncation.value).toFixed(2);
  });
  ui.styleAlpha.addEventListener('input', () => {
    ui.styleAlphaValue.textContent = Number(ui.styleAlpha.value).toFixed(2);
  });

  ui.brushSize.addEventListener('input', () => {
    ui.brushSizeValue.textContent = ui.brushSize.value;
  });
  ui.eraser.addEventListener('click', toggleEraser);
  ui.undo.addEventListener('click', undo);
  ui.clearMask.addEventListener('click', clearMask);
  ui.maskFromAlpha.addEventListener('change', () => {
    ui.canvasStack.classList.toggle('from-alpha', ui.maskFromAlpha.checked);
  });
  ui.maskCanvas.addEventListener('pointerdown', startStroke);
  ui.maskCanvas.addEventListener('pointermove', continueStroke);
  ui.maskCanvas.addEventListener('pointerup', endStroke);
  ui.maskCanvas.addEventListener('pointercancel', endStroke);

  ui.zoom.addEventListener('change', applyZoom);
  ui.sideBySide.addEventListener('change', applyZoom);
  window.addEventListener('resize', () => {
    if (ui.zoom.value === 'fit') applyZoom();
    fitEditor();
  });
  ui.compareSlider.addEventListener('input', onCompareSlide);
  ui.downloadFormat.addEventListener('change', () => {
    if (shownJob) updateDownloadLink();
  });
  ui.paintAgain.addEventListener('click', paintAgainOnResult);
}

async function start() {
  bindDropZone();
  bindControls();
  onCompareSlide();
  try {
    const catalogue = await requestJson('/api/models');
    models = catalogue.models ?? [];
    limits = catalogue.limits ?? {};
  } catch (error) {
    showError(`Could not load the list of models: ${error.message}`);
  }
  onTaskChange();
}

start();
