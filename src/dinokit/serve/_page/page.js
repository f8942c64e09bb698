// The dinokit search page: upload or drop an image, see its neighbours, click one to search
// from it; browse clusters and duplicate groups when the server has them. It talks only to
// the server that served it (see its Content-Security-Policy).
'use strict';

const K = 24;
const $ = (selector) => document.querySelector(selector);

function el(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (response.status === 401) {
    const token = window.prompt('This server needs its access token:');
    if (token) {
      document.cookie = `dinokit_token=${token}; path=/; SameSite=Strict`;
      return api(path, options);
    }
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

function thumb(id, caption, score, path) {
  const img = el('img', { src: `/api/images/${id}/thumbnail?size=160`, alt: caption, loading: 'lazy' });
  const text = el('figcaption', { title: caption });
  if (score !== undefined) text.append(el('b', { text: score.toFixed(3) }), ' ');
  text.append(caption);
  const figure = el('figure', { class: 'hit', 'data-id': String(id), title: 'search from this image' },
    [img, text]);
  if (path !== undefined) figure.dataset.path = path;
  figure.addEventListener('click', () => searchFrom(id));
  return figure;
}

function setStatus(text, error = false) {
  $('#status').textContent = text;
  $('#status').className = error ? 'note error' : 'note';
}

function showResults(name, picture, response) {
  const figure = el('figure', {}, [picture, el('figcaption', { text: name, title: name })]);
  $('#query').replaceChildren(el('h3', { text: 'Query' }), figure);
  $('#results').replaceChildren(...response.results.map(
    (hit) => thumb(hit.id, hit.label ? `${hit.path} (${hit.label})` : hit.path, hit.score, hit.path)));
  $('#results').dataset.query = response.query;
  $('#results').dataset.state = 'done';
  setStatus(`${response.results.length} most similar images to ${response.query}`);
}

async function run(request) {
  $('#results').dataset.state = 'loading';
  setStatus('searching…');
  try {
    await request();
  } catch (error) {
    $('#results').dataset.state = 'error';
    setStatus(error.message, true);
  }
}

function searchUpload(file) {
  return run(async () => {
    const form = new FormData();
    form.append('file', file, file.name);
    const response = await api(`/api/search/upload?k=${K}`, { method: 'POST', body: form });
    const picture = el('img', { src: URL.createObjectURL(file), alt: file.name });
    showResults(file.name, picture, response);
  });
}

function searchFrom(id) {
  show('search');
  window.scrollTo(0, 0);
  return run(async () => {
    const response = await api(`/api/images/${id}/neighbours?k=${K}`);
    const picture = el('img', { src: `/api/images/${id}/thumbnail?size=160`, alt: response.query });
    showResults(response.query, picture, response);
  });
}

function show(view) {
  for (const button of document.querySelectorAll('nav button')) {
    if (button.dataset.view === view) button.setAttribute('aria-current', 'page');
    else button.removeAttribute('aria-current');
  }
  for (const name of ['search', 'clusters', 'duplicates']) $(`#${name}`).hidden = name !== view;
}

async function loadClusters() {
  const { clusters } = await api('/api/clusters?preview=12');
  $('#cluster-list').replaceChildren(...clusters.map((c) => el('div', { class: 'group' }, [
    el('h3', {}, [`Cluster ${c.cluster} `, el('small', { text: `${c.size} images` })]),
    el('div', { class: 'strip' }, c.preview.map((id) => thumb(id, `#${id}`))),
  ])));
}

async function loadDuplicates() {
  const { groups, total } = await api('/api/duplicates?limit=100');
  const shown = groups.map((g) => el('div', { class: 'group' }, [
    el('h3', {}, [`Group ${g.group} `, el('small', { text: `${g.size} images ${g.kind}` })]),
    el('div', { class: 'strip' }, g.members.map((m) => thumb(m.id, `#${m.id}`, m.score ?? undefined))),
  ]));
  if (total > groups.length) shown.push(el('p', { class: 'note', text: `${total - groups.length} more groups` }));
  $('#group-list').replaceChildren(...shown);
}

async function start() {
  for (const button of document.querySelectorAll('nav button')) {
    button.addEventListener('click', () => show(button.dataset.view));
  }
  const drop = $('#drop');
  $('#file').addEventListener('change', (event) => {
    if (event.target.files.length) searchUpload(event.target.files[0]);
  });
  drop.addEventListener('dragover', (event) => { event.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    if (event.dataTransfer.files.length) searchUpload(event.dataTransfer.files[0]);
  });
  try {
    const health = await api('/api/health');
    const model = await api('/api/model');
    $('#count').textContent = `${health.images} images · ${model.model?.architecture ?? ''} ${model.feature ?? ''}`;
    if (!health.model) setStatus(`uploads unavailable: ${model.error}`, true);
    if (health.clusters) {
      document.querySelector('nav button[data-view="clusters"]').hidden = false;
      await loadClusters();
    }
    if (health.duplicates) {
      document.querySelector('nav button[data-view="duplicates"]').hidden = false;
      await loadDuplicates();
    }
  } catch (error) {
    setStatus(error.message, true);
  }
  document.body.dataset.ready = 'yes';
}

start();
