/* cacpipe review pages: helpers shared by the study page and the cohort index.
   Everything that comes from the data block is put into the page with textContent only. */
'use strict';
const Cac = (function () {
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else if (k === 'dataset') Object.assign(e.dataset, v); else e.setAttribute(k, v);
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // CSV cells like cacpipe/csvout.py: text that a spreadsheet would run as a formula (leading
  // = + - @ tab CR) gets a leading apostrophe; numbers are left alone; RFC 4180 quoting.
  const NUMBER = /^\s*[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)\s*$/i;
  function safeCell(v) {
    if (v === null || v === undefined) return '';
    const s = String(v);
    if (typeof v !== 'number' && /^[=+\-@\t\r]/.test(s) && !NUMBER.test(s)) return "'" + s;
    return s;
  }
  function csvCell(v) {
    const s = safeCell(v);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function csvText(columns, records) {
    const lines = [columns.join(',')];
    for (const r of records) lines.push(columns.map((c) => csvCell(r[c])).join(','));
    return lines.join('\r\n') + '\r\n';
  }

  function download(name, text, type) {
    const blob = new Blob([text], {type: type || 'text/plain'});
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }
  const fileSafe = (s) => String(s || 'all').replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 80);

  function load(key) {
    try { return JSON.parse(localStorage.getItem(key) || '{}') || {}; } catch (e) { return {}; }
  }
  function save(key, obj) {
    try { localStorage.setItem(key, JSON.stringify(obj)); return true; } catch (e) { return false; }
  }
  function storedKeys(prefix) {
    const out = [];
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      if (k && k.startsWith(prefix)) out.push(k);
    }
    return out;
  }

  // Ratings of one stored study record -> CSV records (columns of cacpipe evaluate --ratings).
  function ratingRecords(all, arteries, onlyRater) {
    const out = [];
    for (const [who, arts] of Object.entries(all.byRater || {})) {
      if (onlyRater && who !== onlyRater) continue;
      for (const a of arteries || Object.keys(arts)) {
        const r = arts[a];
        if (r && r.rating) out.push({rater: who, patient_id: all.patient_id, study_uid: all.study_uid, artery: a,
          rating: r.rating, comment: r.comment, timestamp: r.timestamp});
      }
    }
    return out;
  }
  // Corrections of one stored study record -> corrections documents (schema cacpipe.corrections/1).
  function correctionDocs(all, schema, onlyReader) {
    const out = [];
    for (const [who, rec] of Object.entries(all.byReader || {})) {
      if (onlyReader && who !== onlyReader) continue;
      if (!rec || !rec.changes || !rec.changes.length) continue;
      out.push({schema: schema, reader: who, time: rec.time, study_uid: all.study_uid, patient_id: all.patient_id,
        series_uid: all.series_uid || '', changes: rec.changes, preview: rec.preview || null});
    }
    return out;
  }

  const fmt = (v, nd) => (v === null || v === undefined || Number.isNaN(v)) ? 'n/a' : Number(v).toFixed(nd === undefined ? 1 : nd);

  return {$, el, safeCell, csvCell, csvText, download, fileSafe, load, save, storedKeys, ratingRecords,
    correctionDocs, fmt};
})();
