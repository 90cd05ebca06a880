/* The study review page: viewer wiring, lesion table, live scores, corrections and ratings.
   Data: the JSON block #review-data (cacpipe/review/page.py). Storage (this browser only, until
   downloaded): ratings under D.storage.ratings + study_uid, corrections under
   D.storage.corrections + study_uid, the reader's name under D.storage.reader. */
'use strict';
(function () {
  const {$, el, fmt} = Cac;
  const D = JSON.parse($('review-data').textContent);
  const R = D.rules;
  const RATINGS_KEY = D.storage.ratings + D.study_uid;
  const CORR_KEY = D.storage.corrections + D.study_uid;
  const CALCIUM = D.label_ids.calcium;   // artery -> calcium label id
  const SELECTED = D.label_ids.selected;

  // ---------------------------------------------------------------- state
  const st = {
    lesions: D.result.lesions.map((l, i) => Object.assign({}, l, {id: i + 1, orig: l.artery, deleted: false, time: null})),
    adds: [],          // {artery, seed_zyx, time, voxels, stats, error}
    na: {},            // artery -> {reason, time}
    selected: null,    // lesion id (original lesions) or 'add:N'
    picking: null,     // artery whose missed lesion the next click marks
    series: 'heart', cursor: null, cross: null,
  };
  let vols = null, viewer = null, lesionVoxels = null, labOrig = null, labDisp = null, scanDisp = null, lmapDisp = null;

  function reader() { return $('rater').value.trim(); }
  function sliceRef(z) {
    const inst = (D.ct.instance_numbers || [])[z], pos = (D.ct.slice_positions_mm || [])[z];
    let s = (inst !== null && inst !== undefined) ? 'image ' + inst : 'slice ' + (z + 1);
    if (pos !== null && pos !== undefined) s += ' (z ' + Number(pos).toFixed(1) + ' mm)';
    return s;
  }
  function sliceRange(z0, z1, best) {
    const inst = D.ct.instance_numbers || [];
    const has = inst[z0] !== null && inst[z0] !== undefined && inst[z1] !== null && inst[z1] !== undefined;
    const r = z0 === z1 ? (has ? 'image ' + inst[z0] : 'slice ' + (z0 + 1))
      : (has ? 'images ' + inst[z0] + '\u2013' + inst[z1] : 'slices ' + (z0 + 1) + '\u2013' + (z1 + 1));
    return r + '; best ' + sliceRef(best);
  }
  function lesionName(l) { return l.name; }
  function addName(idx) { return 'added ' + st.adds[idx].artery + ' +' + (idx + 1); }

  // ---------------------------------------------------------------- corrections -> labels
  function heartIndex(zyx) {
    const ct = vols.heart.ct;
    const kji = ct.toVol(zyx);
    return ct.inside(kji[0], kji[1], kji[2]) ? kji : null;
  }
  function rebuild() {
    const ct = vols.heart.ct;
    const lab = labOrig.slice();
    lmapDisp = new Uint16Array(vols.heart.lesions.data);
    for (const l of st.lesions) {
      const vox = lesionVoxels.get(l.id) || [];
      if (l.deleted) for (const q of vox) { lab[q] = 0; lmapDisp[q] = 0; }
      else if (l.artery !== l.orig) for (const q of vox) lab[q] = CALCIUM[l.artery];
    }
    // missed lesions, in the order they were marked, after the lesion changes (as `cacpipe review apply`)
    st.adds.forEach((a, idx) => {
      a.error = null; a.voxels = null; a.stats = null;
      const kji = heartIndex(a.seed_zyx);
      if (!kji) { a.error = 'outside the full-resolution heart region'; return; }
      if (!D.result.arteries[a.artery].assessed) { a.error = a.artery + ' was not assessed'; return; }
      const g = CacCalcium.growLesion(ct, lab, kji, R);
      if (g.error) { a.error = g.error; return; }
      for (const q of g.voxels) { lab[q] = CALCIUM[a.artery]; lmapDisp[q] = st.lesions.length + idx + 1; }
      a.voxels = g.voxels;
      a.stats = CacCalcium.lesionStats(ct, g.voxels, D.ct.spacing_zyx, R);
    });
    labDisp = lab;
    refreshLabels();
  }
  function refreshLabels() {
    const show = labDisp.slice();
    // the selected lesion gets a ring (its in-plane neighbours), so its own pixels stay visible
    const sel = new Set(selectedVoxels());
    const [, hy, hx] = vols.heart.ct.dims;
    for (const q of sel) {
      const y = Math.floor(q / hx) % hy, x = q % hx;
      for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
        if (y + dy < 0 || y + dy >= hy || x + dx < 0 || x + dx >= hx) continue;
        const r = q + dy * hx + dx;
        if (!sel.has(r) && !R.calcium_ids.includes(show[r])) show[r] = SELECTED;
      }
    }
    // the whole-scan labels: block maxima, recomputed over the heart region
    const h = vols.heart.ct, s = vols.scan.ct;
    const sl = vols.scan.labels.data.slice();
    const [nz, ny, nx] = h.dims, [sz, sy, sx] = s.dims;
    const o = h.offset, stp = s.step;
    const zi = [], yi = [], xi = [];
    for (let k = 0; k < nz; k++) zi.push(Math.floor((o[0] + k) / stp[0]));
    for (let j = 0; j < ny; j++) yi.push(Math.floor((o[1] + j) / stp[1]));
    for (let i = 0; i < nx; i++) xi.push(Math.floor((o[2] + i) / stp[2]));
    const inScan = (k, j, i) => zi[k] < sz && yi[j] < sy && xi[i] < sx;
    for (let k = 0; k < nz; k++) for (let j = 0; j < ny; j++) for (let i = 0; i < nx; i++)
      if (inScan(k, j, i)) sl[(zi[k] * sy + yi[j]) * sx + xi[i]] = 0;
    for (let k = 0, q = 0; k < nz; k++) for (let j = 0; j < ny; j++) for (let i = 0; i < nx; i++, q++) {
      const v = show[q];
      if (v && inScan(k, j, i)) { const p = (zi[k] * sy + yi[j]) * sx + xi[i]; if (v > sl[p]) sl[p] = v; }
    }
    scanDisp = sl;
    if (viewer) viewer.labelsChanged(show, scanDisp);
  }
  function selectedVoxels() {
    if (st.selected === null) return [];
    if (typeof st.selected === 'string') { const a = st.adds[Number(st.selected.slice(4))]; return (a && a.voxels) || []; }
    const l = st.lesions[st.selected - 1];
    return (l && !l.deleted) ? (lesionVoxels.get(l.id) || []) : [];
  }

  // ---------------------------------------------------------------- numbers
  function currentScores() {
    const na = {};
    for (const a of D.arteries) na[a] = !!st.na[a];
    const adds = st.adds.filter((a) => a.stats).map((a) => ({artery: a.artery, agatston: a.stats.agatston,
      volume_mm3: a.stats.volume_mm3, peak_hu: a.stats.peak_hu}));
    return CacCalcium.scores(st.lesions, adds, na, D);
  }
  function setCell(id, text, original) {
    const c = $(id);
    if (!c) return;
    c.textContent = text;
    c.classList.toggle('changed', original !== undefined && original !== text);
    if (original !== undefined && original !== text) c.appendChild(el('span', {class: 'orig'}, ' (was ' + original + ')'));
  }
  function renderScores() {
    const S = currentScores(), O = D.result;
    for (const a of D.arteries) {
      const s = S.arteries[a], o = O.arteries[a];
      const na = (x) => x.assessed ? null : 'not assessed';
      setCell('score-' + a + '-agatston', na(s) || fmt(s.agatston), na(o) || fmt(o.agatston));
      setCell('score-' + a + '-volume', na(s) || fmt(s.calcium_volume_mm3), na(o) || fmt(o.calcium_volume_mm3));
      setCell('score-' + a + '-lesions', na(s) || String(s.lesions), na(o) || String(o.lesions));
      setCell('score-' + a + '-grade', na(s) || String(s.grade || 'n/a'), na(o) || String(o.grade || 'n/a'));
      const b = $('na-' + a);
      b.setAttribute('aria-pressed', st.na[a] ? 'true' : 'false');
      b.disabled = !o.assessed;
    }
    const t = S.total, ot = O.total;
    setCell('score-total-agatston', fmt(t.agatston), fmt(ot.agatston));
    setCell('score-total-volume', fmt(t.calcium_volume_mm3), fmt(ot.calcium_volume_mm3));
    setCell('score-total-lesions', t.lesions === null ? 'n/a' : String(t.lesions), ot.lesions === null ? 'n/a' : String(ot.lesions));
    const why = t.agatston === null ? 'n/a' : (t.complete ? 'n/a (Agatston not valid: see flags)' : 'n/a (not every artery assessed)');
    setCell('score-category', t.category || why, ot.category || 'n/a');
    setCell('score-cacdrs', t.cac_drs || why, ot.cac_drs || 'n/a');
    $('head-total').textContent = 'Total Agatston ' + fmt(t.agatston) + ' \u00b7 ' + fmt(t.calcium_volume_mm3) +
      ' mm\u00b3 \u00b7 ' + (t.category || 'no category') + ' \u00b7 ' + (t.cac_drs || 'no CAC-DRS') +
      (changes().length ? ' (with your corrections)' : '');
    return S;
  }
  function arteryFlags(a) {
    return D.result.flags.filter((f) => f.artery === a).map((f) => f.code);
  }
  function renderLesions() {
    const body = $('lesion-body');
    body.textContent = '';
    const rows = st.lesions.map((l) => ({key: l.id, l, added: null}));
    st.adds.forEach((a, idx) => rows.push({key: 'add:' + idx, l: null, added: a, idx}));
    $('no-lesions').hidden = rows.length > 0;
    for (const r of rows) {
      const tr = el('tr', {dataset: {lesion: String(r.key)}});
      if (st.selected === r.key) tr.classList.add('selected');
      let name, artery, slices, peak, area, vol, aga, flags;
      if (r.l) {
        const l = r.l;
        name = l.name; artery = l.artery;
        slices = sliceRange(l.slices[0], l.slices[l.slices.length - 1], l.best_slice);
        peak = fmt(l.peak_hu, 0); area = fmt(l.area_mm2); vol = fmt(l.volume_mm3); aga = fmt(l.agatston);
        flags = arteryFlags(l.orig);
        if (l.found_by === 'density_rule') flags = ['found by the density rule (the network missed it)'].concat(flags);
        const ev = D.prior ? D.prior.lesions.find((e) => e.current_lesion === l.name && e.match_id) : null;
        if (ev) flags = [ev.match_id + ' ' + ev.status.replace('_', ' ') + ' since the prior study'].concat(flags);
        if (l.deleted) { tr.classList.add('deleted'); flags = ['deleted by reader'].concat(flags); }
        else if (l.artery !== l.orig) flags = ['reassigned from ' + l.orig].concat(flags);
      } else {
        const a = r.added, s = a.stats;
        name = addName(r.idx); artery = a.artery;
        flags = ['added by reader'].concat(a.error ? ['error: ' + a.error] : []);
        if (s) {
          const o = vols.heart.ct.offset[0];
          slices = sliceRange(s.slices[0] + o, s.slices[s.slices.length - 1] + o, s.best + o);
          peak = fmt(s.peak_hu, 0); area = fmt(s.area_mm2); vol = fmt(s.volume_mm3); aga = fmt(s.agatston);
        } else { slices = 'seed ' + sliceRef(a.seed_zyx[0]); peak = area = vol = aga = 'n/a'; }
      }
      tr.appendChild(el('td', {}, name));
      const tdA = el('td');
      if (r.l) {
        const sel = el('select', {'aria-label': 'artery of ' + name, class: 'reassign'});
        for (const a of D.arteries) { const o = el('option', {value: a}, a); if (a === artery) o.selected = true; sel.appendChild(o); }
        sel.disabled = r.l.deleted;
        sel.addEventListener('click', (e) => e.stopPropagation());
        sel.addEventListener('change', () => reassign(r.l.id, sel.value));
        tdA.appendChild(sel);
      } else tdA.textContent = artery;
      tr.appendChild(tdA);
      tr.appendChild(el('td', {class: 'slices'}, slices));
      for (const v of [peak, area, vol, aga]) tr.appendChild(el('td', {class: 'num'}, v));
      tr.appendChild(el('td', {class: 'flags'}, flags.join(', ')));
      const act = el('td', {class: 'actions'});
      const go = el('button', {class: 'secondary', type: 'button', 'aria-label': 'show ' + name}, 'Go');
      go.addEventListener('click', (e) => { e.stopPropagation(); select(r.key, true); });
      act.appendChild(go);
      const del = el('button', {class: 'secondary', type: 'button',
        'aria-label': (r.l ? (r.l.deleted ? 'restore ' : 'delete ') : 'remove ') + name,
        title: r.l ? (r.l.deleted ? 'restore this lesion' : 'delete: a false positive') : 'remove this added lesion'},
      r.l ? (r.l.deleted ? 'Restore' : 'Delete') : 'Remove');
      del.addEventListener('click', (e) => {
        e.stopPropagation();
        if (r.l) setDeleted(r.l.id, !r.l.deleted); else removeAdd(r.idx);
      });
      act.appendChild(del);
      tr.appendChild(act);
      tr.addEventListener('click', () => select(r.key, true));
      body.appendChild(tr);
    }
  }

  // ---------------------------------------------------------------- change list + storage
  function changes() {
    const out = [];
    for (const l of st.lesions) {
      if (l.deleted) out.push({op: 'delete', lesion: l.name, centre_zyx: l.centre_zyx, time: l.time});
      else if (l.artery !== l.orig) out.push({op: 'reassign', lesion: l.name, from: l.orig, to: l.artery, centre_zyx: l.centre_zyx, time: l.time});
    }
    for (const a of st.adds) out.push({op: 'add', artery: a.artery, seed_zyx: a.seed_zyx, time: a.time,
      voxels: a.stats ? a.stats.voxels : 0, agatston: a.stats ? Number(a.stats.agatston.toFixed(3)) : null});
    for (const a of D.arteries) if (st.na[a]) out.push({op: 'not_assessable', artery: a, reason: st.na[a].reason || '', time: st.na[a].time});
    return out;
  }
  function describe(c) {
    if (c.op === 'delete') return 'deleted ' + c.lesion + ' (false positive)';
    if (c.op === 'reassign') return c.lesion + ' reassigned from ' + c.from + ' to ' + c.to;
    if (c.op === 'add') return 'added a missed ' + c.artery + ' lesion at ' + sliceRef(c.seed_zyx[0]) + ' (' + c.voxels + ' voxels)';
    return c.artery + ' marked not assessable' + (c.reason ? ': ' + c.reason : '');
  }
  function preview(S) {
    const arts = {};
    for (const a of D.arteries) arts[a] = S.arteries[a].agatston;
    return {total_agatston: S.total.agatston, category: S.total.category, cac_drs: S.total.cac_drs, arteries: arts};
  }
  function document_() {
    return {schema: D.corrections_schema, reader: reader(), time: new Date().toISOString(), study_uid: D.study_uid,
      patient_id: D.patient_id, series_uid: D.series_uid, changes: changes(), preview: preview(currentScores())};
  }
  function persist() {
    const who = reader();
    const all = Cac.load(CORR_KEY);
    all.study_uid = D.study_uid; all.patient_id = D.patient_id; all.series_uid = D.series_uid;
    all.byReader = all.byReader || {};
    const ch = changes();
    if (ch.length) all.byReader[who] = {time: new Date().toISOString(), changes: ch, preview: preview(currentScores())};
    else delete all.byReader[who];
    const ok = Cac.save(CORR_KEY, all);
    $('correction-status').textContent = ok ? (ch.length ? ch.length + ' correction(s) by ' + who + ' saved in this browser at ' +
      new Date().toLocaleTimeString() + '; download them to apply with `cacpipe review apply`.' : 'No corrections.')
      : 'Could not save in this browser (storage full or blocked): download the corrections now.';
  }
  function renderChanges() {
    const ul = $('changes');
    ul.textContent = '';
    const list = changes();
    list.forEach((c) => {
      const li = el('li', {}, describe(c) + ' ');
      const add = c.op === 'add' ? st.adds.find((a) => a.seed_zyx === c.seed_zyx) : null;
      if (add && add.error) { li.classList.add('error'); li.appendChild(el('span', {}, '(' + add.error + ') ')); }
      const undo = el('button', {class: 'secondary', type: 'button'}, 'Undo');
      undo.addEventListener('click', () => undoChange(c));
      li.appendChild(undo);
      ul.appendChild(li);
    });
    $('download-corrections').disabled = !list.length;
  }
  function requireReader() {
    if (reader()) return true;
    $('correction-status').textContent = 'Enter your name (Reader) first: corrections and ratings are kept per reader.';
    $('rater').focus();
    return false;
  }
  function changed() {
    rebuild();
    renderLesions(); renderChanges(); renderScores(); showReadout();
    if (reader()) persist();
  }
  function now() { return new Date().toISOString(); }
  function reassign(id, to) {
    const l = st.lesions[id - 1];
    if (!requireReader()) { renderLesions(); return; }
    l.artery = to; l.time = now(); changed();
  }
  function setDeleted(id, on) {
    if (!requireReader()) return;
    const l = st.lesions[id - 1];
    l.deleted = on; l.time = now();
    changed();
  }
  function removeAdd(idx) { st.adds.splice(idx, 1); if (typeof st.selected === 'string') st.selected = null; changed(); }
  function toggleNA(a) {
    if (!requireReader()) return;
    if (st.na[a]) delete st.na[a];
    else st.na[a] = {reason: ($('na-reason').value || '').trim(), time: now()};
    changed();
  }
  function undoChange(c) {
    if (c.op === 'delete' || c.op === 'reassign') {
      const l = st.lesions.find((x) => x.name === c.lesion);
      l.deleted = false; l.artery = l.orig;
    } else if (c.op === 'add') st.adds = st.adds.filter((a) => a.seed_zyx !== c.seed_zyx);
    else delete st.na[c.artery];
    changed();
  }
  function restore() {  // this reader's saved corrections -> state
    for (const l of st.lesions) { l.deleted = false; l.artery = l.orig; l.time = null; }
    st.adds = []; st.na = {}; st.selected = null;
    const rec = ((Cac.load(CORR_KEY).byReader || {})[reader()]) || null;
    for (const c of (rec && rec.changes) || []) {
      const l = c.lesion ? st.lesions.find((x) => x.name === c.lesion) : null;
      if (c.op === 'delete' && l) { l.deleted = true; l.time = c.time; }
      else if (c.op === 'reassign' && l && D.arteries.includes(c.to)) { l.artery = c.to; l.time = c.time; }
      else if (c.op === 'add' && D.arteries.includes(c.artery)) st.adds.push({artery: c.artery, seed_zyx: c.seed_zyx, time: c.time});
      else if (c.op === 'not_assessable' && D.arteries.includes(c.artery)) st.na[c.artery] = {reason: c.reason || '', time: c.time};
    }
    rebuild(); renderLesions(); renderChanges(); renderScores(); showReadout();
    $('correction-status').textContent = rec ? 'Restored ' + rec.changes.length + ' correction(s) of ' + reader() + ' from this browser.' : '';
  }
  function startPick(a) {
    if (!requireReader()) return;
    st.picking = st.picking === a ? null : a;
    for (const b of D.arteries) $('add-' + b).setAttribute('aria-pressed', st.picking === b ? 'true' : 'false');
    $('viewport').classList.toggle('picking', !!st.picking);
    $('pick-status').textContent = st.picking ? 'Click on the missed ' + a + ' calcium in the image (Esc cancels).' : '';
  }
  function addAt(zyx, artery) {
    st.adds.push({artery, seed_zyx: zyx.map((v) => Math.round(v)), time: now()});
    changed();
    const a = st.adds[st.adds.length - 1];
    $('pick-status').textContent = a.error ? 'Not added: ' + a.error + '.' : 'Added a ' + artery + ' lesion: ' +
      a.stats.voxels + ' voxels, Agatston ' + fmt(a.stats.agatston) + '.';
    if (a.error) { st.adds.pop(); changed(); }
    else select('add:' + (st.adds.length - 1), false);
    return a;
  }

  // ---------------------------------------------------------------- viewer wiring
  function select(key, go) {
    st.selected = key;
    refreshLabels();
    renderLesions();
    if (!go || !viewer) return;
    let zyx = null;
    if (typeof key === 'string') {
      const a = st.adds[Number(key.slice(4))];
      zyx = a && a.seed_zyx;
    } else {
      const l = st.lesions[key - 1];
      zyx = [l.best_slice, Math.round(l.centre_yx[0]), Math.round(l.centre_yx[1])];
    }
    if (zyx) viewer.goto(zyx);
  }
  function describePoint(zyx, series) {
    if (!zyx) return '';
    const parts = [sliceRef(zyx[0]), 'voxel z ' + zyx[0] + ' y ' + zyx[1] + ' x ' + zyx[2]];
    const kji = heartIndex(zyx);
    if (kji) {
      const q = vols.heart.ct.index(kji[0], kji[1], kji[2]);
      parts.push(vols.heart.ct.data[q] + ' HU');
      const lab = labDisp[q];
      if (lab) parts.push(D.label_names[lab]);
      const lid = lmapDisp[q];
      if (lid) parts.push(lid <= st.lesions.length ? st.lesions[lid - 1].name + (st.lesions[lid - 1].artery !== st.lesions[lid - 1].orig ? ' (now ' + st.lesions[lid - 1].artery + ')' : '') : addName(lid - st.lesions.length - 1));
    } else {
      const s = vols.scan.ct, k = s.toVol(zyx);
      if (s.inside(k[0], k[1], k[2])) parts.push('\u2248' + Math.round(s.value(k[0], k[1], k[2])) + ' HU (' + D.scan_block + ' block mean)');
    }
    return parts.join(' \u00b7 ');
  }
  function showReadout() {
    $('readout').textContent = 'cursor:    ' + (describePoint(st.cursor, st.series) || '-') + '\ncrosshair: ' + (describePoint(st.cross, st.series) || '-');
  }
  function syncSlider() {
    if (!viewer) return;
    const n = viewer.sliceCount(), idx = viewer.sliceIndex();
    const flip = viewer.normalAxis() === 0 && D.ct.flips.z_up;   // superior slices on the left
    const r = $('slice-range');
    r.max = String(n - 1);
    r.value = String(flip ? n - 1 - idx : idx);
    const z = st.cross;
    $('slice-info').textContent = z ? (viewer.normalAxis() === 0 ? sliceRef(z[0]) + ' \u00b7 ' : '') +
      (st.series === 'heart' ? 'heart region' : 'whole scan') + ' slice ' + (idx + 1) + '/' + n : '';
  }
  function setWindowInputs(level, width) { $('win-level').value = String(Math.round(level)); $('win-width').value = String(Math.round(width)); }
  function applyWindow(level, width) {
    setWindowInputs(level, width);
    for (const b of document.querySelectorAll('button[data-window]')) {
      const w = D.windows[b.dataset.window];
      b.setAttribute('aria-pressed', w[0] === level && w[1] === width ? 'true' : 'false');
    }
    if (viewer) viewer.setWindow(level, width);
  }
  function applyOverlay() {
    if (viewer) viewer.setOverlay($('overlay-toggle').checked, Number($('overlay-opacity').value) / 100);
  }
  async function setSeries(name) {
    st.series = name;
    for (const b of document.querySelectorAll('button[data-series]')) b.setAttribute('aria-pressed', b.dataset.series === name ? 'true' : 'false');
    await viewer.setSeries(name, st.cross);
    applyWindow(Number($('win-level').value), Number($('win-width').value));
    applyOverlay();
  }
  function setView(name) {
    for (const b of document.querySelectorAll('button[data-view]')) b.setAttribute('aria-pressed', b.dataset.view === name ? 'true' : 'false');
    viewer.setView(name);
    syncSlider();
  }

  function softwareGL() {  // the renderer's name when WebGL2 runs on the CPU (SwiftShader, llvmpipe), else ''
    try {
      const gl = document.createElement('canvas').getContext('webgl2');
      if (!gl) return '';
      const ext = gl.getExtension('WEBGL_debug_renderer_info');
      const name = String(gl.getParameter(ext ? ext.UNMASKED_RENDERER_WEBGL : gl.RENDERER) || '');
      const lose = gl.getExtension('WEBGL_lose_context');
      if (lose) lose.loseContext();
      return /swiftshader|llvmpipe|softpipe|software|basic render/i.test(name) ? name : '';
    } catch (e) { return ''; }
  }
  async function startViewer() {
    const lut = D.lut;
    const ctx = {vols, D, lut, labelNames: D.label_names,
      onMove: (zyx) => { st.cross = zyx; syncSlider(); showReadout(); document.dispatchEvent(new CustomEvent('cacpipe-cross', {detail: {cross: zyx}})); },
      onHover: (zyx) => { st.cursor = zyx; showReadout(); },
      onClick: (zyx, series) => {
        if (!st.picking) return;
        if (series !== 'heart') { $('pick-status').textContent = 'Mark missed lesions in the Heart series (full resolution, exact HU).'; return; }
        const a = st.picking; startPick(a); addAt(zyx, a);
      },
      onWindow: (w) => applyWindow(w[0], w[1]),
    };
    const box = $('viewport');
    let note = '';
    const asked = (location.hash.match(/viewer=(\w+)/) || [])[1];
    const soft = softwareGL();
    if (D.viewer === 'niivue' && asked !== 'basic' && (!soft || asked === 'niivue')) {
      try { viewer = await CacNiiVueViewer.create(box, ctx); note = 'NiiVue ' + D.niivue_version + ' (WebGL2' + (soft ? ', software: ' + soft : '') + ')'; }
      catch (e) { note = 'basic viewer (NiiVue could not start: ' + e.message + ')'; viewer = null; }
    } else if (D.viewer !== 'niivue') note = 'basic viewer (' + D.viewer_note + ')';
    else if (asked === 'basic') note = 'basic viewer (asked for in the address; #viewer=niivue for NiiVue)';
    else note = 'basic viewer (WebGL here is software rendering (' + soft + '), too slow for NiiVue on a whole CT; add #viewer=niivue to the address to use it anyway)';
    if (!viewer) viewer = await CacBasicViewer.create(box, ctx);
    $('viewer-note').textContent = 'Viewer: ' + note;
    document.body.dataset.viewer = viewer.name;
    refreshLabels();
    applyWindow(D.window[0], D.window[1]);
    applyOverlay();
    const first = st.lesions.length ? st.lesions.slice().sort((a, b) => b.voxels - a.voxels)[0] : null;
    if (first) select(first.id, true);
    else viewer.goto(vols.heart.ct.toScan(vols.heart.ct.dims.map((n) => Math.floor(n / 2))));
  }

  function wire() {
    for (const b of document.querySelectorAll('button[data-window]'))
      b.addEventListener('click', () => { const w = D.windows[b.dataset.window]; applyWindow(w[0], w[1]); });
    for (const id of ['win-level', 'win-width'])
      $(id).addEventListener('change', () => applyWindow(Number($('win-level').value), Math.max(1, Number($('win-width').value))));
    for (const b of document.querySelectorAll('button[data-series]')) b.addEventListener('click', () => setSeries(b.dataset.series));
    for (const b of document.querySelectorAll('button[data-view]')) b.addEventListener('click', () => setView(b.dataset.view));
    $('zoom-in').addEventListener('click', () => viewer.zoom(1.25));
    $('zoom-out').addEventListener('click', () => viewer.zoom(0.8));
    $('zoom-reset').addEventListener('click', () => viewer.resetZoom());
    $('mouse-mode').addEventListener('change', (e) => viewer.setMode(e.target.value));
    $('overlay-toggle').addEventListener('change', applyOverlay);
    $('crosshair-toggle').addEventListener('change', (e) => viewer.setCrosshair(e.target.checked));
    $('overlay-opacity').addEventListener('input', applyOverlay);
    $('slice-range').addEventListener('input', (e) => {
      const n = viewer.sliceCount(), v = parseInt(e.target.value, 10);
      viewer.setSlice(viewer.normalAxis() === 0 && D.ct.flips.z_up ? n - 1 - v : v);
    });
    $('prev').addEventListener('click', () => viewer.step(-1));
    $('next').addEventListener('click', () => viewer.step(1));
    for (const a of D.arteries) {
      $('add-' + a).addEventListener('click', () => startPick(a));
      $('na-' + a).addEventListener('click', () => toggleNA(a));
    }
    $('download-corrections').addEventListener('click', () => {
      if (!requireReader()) return;
      Cac.download('corrections_' + Cac.fileSafe(D.file_id) + '_' + Cac.fileSafe(reader()) + '.json',
        JSON.stringify(document_(), null, 1), 'application/json');
    });
    $('clear-corrections').addEventListener('click', () => {
      for (const l of st.lesions) { l.deleted = false; l.artery = l.orig; }
      st.adds = []; st.na = {}; changed();
    });
    document.addEventListener('keydown', (e) => {
      const t = e.target.tagName;
      if (t === 'INPUT' && e.target.type !== 'range' && e.target.type !== 'checkbox' && e.target.type !== 'radio') return;
      if (t === 'TEXTAREA' || t === 'SELECT' || !viewer || e.ctrlKey || e.metaKey || e.altKey) return;
      const k = e.key;
      const keys = {
        ArrowDown: () => viewer.step(1), j: () => viewer.step(1), ArrowUp: () => viewer.step(-1), k: () => viewer.step(-1),
        PageDown: () => viewer.step(10), PageUp: () => viewer.step(-10),
        o: () => { $('overlay-toggle').checked = !$('overlay-toggle').checked; applyOverlay(); },
        x: () => { $('crosshair-toggle').checked = !$('crosshair-toggle').checked; viewer.setCrosshair($('crosshair-toggle').checked); },
        1: () => applyWindow(...D.windows.calcium), 2: () => applyWindow(...D.windows.mediastinum), 3: () => applyWindow(...D.windows.lung),
        a: () => setView('axial'), c: () => setView('coronal'), s: () => setView('sagittal'), m: () => setView('mpr'),
        '+': () => viewer.zoom(1.25), '=': () => viewer.zoom(1.25), '-': () => viewer.zoom(0.8), 0: () => viewer.resetZoom(),
        h: () => setSeries(st.series === 'heart' ? 'scan' : 'heart'),
        n: () => stepLesion(1), p: () => stepLesion(-1),
        Escape: () => { if (st.picking) startPick(st.picking); },
      };
      if (keys[k]) { keys[k](); e.preventDefault(); }
    });
  }
  function stepLesion(d) {
    const keys = st.lesions.map((l) => l.id).concat(st.adds.map((a, i) => 'add:' + i));
    if (!keys.length) return;
    const i = keys.indexOf(st.selected);
    select(keys[(i + d + keys.length) % keys.length], true);
  }

  // ---------------------------------------------------------------- ratings (as before: cacpipe evaluate --ratings)
  function ratingsForm() {
    const all = Cac.load(RATINGS_KEY);
    const mine = ((all.byRater || {})[reader()]) || {};
    for (const a of D.arteries) {
      const r = mine[a] || {};
      for (const x of document.querySelectorAll('input[name="rating-' + a + '"]')) x.checked = (x.value === r.rating);
      $('comment-' + a).value = r.comment || '';
    }
    rateStatus();
  }
  function rate(a) {
    const who = reader();
    if (!who) { $('rate-status').textContent = 'Enter your rater name first: ratings are stored per rater.'; ratingsForm(); return; }
    const sel = document.querySelector('input[name="rating-' + a + '"]:checked');
    const all = Cac.load(RATINGS_KEY);
    all.study_uid = D.study_uid; all.patient_id = D.patient_id;
    all.byRater = all.byRater || {}; all.byRater[who] = all.byRater[who] || {};
    all.byRater[who][a] = {rating: sel ? sel.value : '', comment: $('comment-' + a).value, timestamp: now()};
    Cac.save(RATINGS_KEY, all);
    rateStatus();
  }
  function rateStatus() {
    const who = reader(), mine = ((Cac.load(RATINGS_KEY).byRater || {})[who]) || {};
    const n = D.arteries.filter((a) => mine[a] && mine[a].rating).length;
    $('rate-status').textContent = who ? (who + ': ' + n + '/' + D.arteries.length + ' arteries rated (saved in this browser)')
      : 'Enter your rater name to rate.';
  }
  const studyRecords = () => Cac.ratingRecords(Cac.load(RATINGS_KEY), D.arteries);

  // ---------------------------------------------------------------- start
  const timing = {};
  window.cacpipeReview = {st, D, timing, studyRecords, csv: () => Cac.csvText(D.columns, studyRecords()),
    scores: currentScores, changes, document: document_, select, addAt, setSeries, setView, applyWindow,
    viewer: () => viewer, describePoint, sliceRef};
  for (const a of D.arteries) {
    for (const x of document.querySelectorAll('input[name="rating-' + a + '"]')) x.addEventListener('change', () => rate(a));
    $('comment-' + a).addEventListener('input', () => rate(a));
  }
  $('download-csv').addEventListener('click', () => Cac.download('ratings_' + Cac.fileSafe(D.file_id) + '.csv',
    Cac.csvText(D.columns, studyRecords()), 'text/csv'));
  $('rater').value = localStorage.getItem(D.storage.reader) || '';
  $('rater').addEventListener('input', () => {
    localStorage.setItem(D.storage.reader, reader());
    ratingsForm();
    if (vols) restore();
  });
  ratingsForm();
  wire();
  $('viewer-note').textContent = 'Loading images\u2026';
  (async () => {
    const t0 = performance.now();
    try {
      vols = {heart: await CacVolumes.decodeSet(D.volumes.heart), scan: await CacVolumes.decodeSet(D.volumes.scan)};
      labOrig = vols.heart.labels.data.slice();
      lesionVoxels = new Map();
      const lm = vols.heart.lesions.data;
      for (let q = 0; q < lm.length; q++) if (lm[q]) { if (!lesionVoxels.has(lm[q])) lesionVoxels.set(lm[q], []); lesionVoxels.get(lm[q]).push(q); }
      timing.decode_ms = Math.round(performance.now() - t0);
      restore();
      timing.labels_ms = Math.round(performance.now() - t0) - timing.decode_ms;
      await startViewer();
      timing.viewer_ms = Math.round(performance.now() - t0) - timing.decode_ms - timing.labels_ms;
      timing.ready_ms = Math.round(performance.now()); timing.start_ms = Math.round(t0);
      document.body.dataset.ready = '1';
    } catch (e) {
      $('viewer-note').textContent = 'The images could not be shown in this browser: ' + e.message +
        '. The numbers, lesion list and ratings below still work; the summary image is at the bottom.';
      document.body.dataset.ready = '1';
      document.body.dataset.error = String(e.message);
      renderLesions(); renderScores();
    }
  })();
})();
