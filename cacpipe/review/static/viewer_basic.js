/* The basic viewer: a Canvas 2D slice viewer with the same interface as the NiiVue one
   (viewer_niivue.js). Used when the NiiVue bundle was not installed when the page was built, or
   when the browser has no WebGL2. Axial, coronal and sagittal slices in radiological display
   (patient right on the image left, anterior up, superior up), window/level, zoom and pan,
   label overlay with opacity, crosshair, HU under the cursor (reported through callbacks). */
'use strict';
const CacBasicViewer = (function () {
  const GAP_MM = 4;
  const LETTERS = {axial: ['R', 'L', 'A', 'P'], coronal: ['R', 'L', 'S', 'I'], sagittal: ['A', 'P', 'S', 'I']};

  class Viewer {
    constructor(container, ctx) {
      this.name = 'basic';
      this.ctx = ctx;                 // {vols, D, lut, onMove, onHover, onClick}
      this.container = container;
      this.canvas = document.createElement('canvas');
      this.canvas.setAttribute('aria-label', 'CT slice viewer');
      this.canvas.tabIndex = 0;
      container.appendChild(this.canvas);
      this.g = this.canvas.getContext('2d');
      this.off = document.createElement('canvas');
      this.series = 'heart';
      this.view = 'axial';
      this.zoomF = 1; this.pan = [0, 0];
      this.win = [200, 800];
      this.overlay = true; this.opacity = 0.5;
      this.mode = 'crosshair';        // left drag: crosshair | pan | window
      this.crosshair = true;
      this.pos = {};                  // per series: [k, j, i]
      for (const [name, s] of Object.entries(ctx.vols)) this.pos[name] = s.ct.dims.map((n) => Math.floor(n / 2));
      this.labels = {heart: ctx.vols.heart.labels.data, scan: ctx.vols.scan.labels.data};
      this._listen();
      new ResizeObserver(() => this.render()).observe(container);
    }
    static async create(container, ctx) { const v = new Viewer(container, ctx); v.render(); return v; }

    vol() { return this.ctx.vols[this.series].ct; }
    // plane geometry of the current view: width/height in pixels, pixel size (mm), pixel -> voxel
    plane() {
      const v = this.vol();
      const [nz, ny, nx] = v.dims;
      const sp = this.ctx.D.ct.spacing_zyx.map((s, a) => s * v.step[a]);
      const F = this.ctx.D.ct.flips;
      const p = this.pos[this.series];
      const fy = (j) => (F.rows ? ny - 1 - j : j), fx = (i) => (F.cols ? nx - 1 - i : i), fz = (k) => (F.z_up ? nz - 1 - k : k);
      if (this.view === 'coronal') return {w: nx, h: nz, pw: sp[2], ph: sp[0], at: (c, r) => [fz(r), p[1], fx(c)],
        of: (kji) => [fx(kji[2]), fz(kji[0])], normal: 1};
      if (this.view === 'sagittal') return {w: ny, h: nz, pw: sp[1], ph: sp[0], at: (c, r) => [fz(r), fy(c), p[2]],
        of: (kji) => [fy(kji[1]), fz(kji[0])], normal: 2};
      return {w: nx, h: ny, pw: sp[2], ph: sp[1], at: (c, r) => [p[0], fy(r), fx(c)], of: (kji) => [fx(kji[2]), fy(kji[1])],
        normal: 0};
    }
    layout(P) {
      const cw = this.canvas.width, ch = this.canvas.height;
      const scale = Math.min(cw / (P.w * P.pw), ch / (P.h * P.ph)) * this.zoomF;
      const dw = P.w * P.pw * scale, dh = P.h * P.ph * scale;
      return {x: (cw - dw) / 2 + this.pan[0], y: (ch - dh) / 2 + this.pan[1], sx: P.pw * scale, sy: P.ph * scale, dw, dh};
    }
    render() {
      const dpr = window.devicePixelRatio || 1;
      const W = Math.max(1, Math.round(this.container.clientWidth * dpr)), H = Math.max(1, Math.round(this.container.clientHeight * dpr));
      if (this.canvas.width !== W || this.canvas.height !== H) { this.canvas.width = W; this.canvas.height = H; }
      const v = this.vol(), lab = this.labels[this.series], P = this.plane(), lut = this.ctx.lut;
      this.off.width = P.w; this.off.height = P.h;
      const og = this.off.getContext('2d');
      const img = og.createImageData(P.w, P.h);
      const px = img.data;
      const lo = this.win[0] - this.win[1] / 2, w = this.win[1];
      const a = this.overlay ? this.opacity : 0;
      for (let r = 0; r < P.h; r++) for (let c = 0; c < P.w; c++) {
        const [k, j, i] = P.at(c, r);
        const q = v.index(k, j, i);
        let g = ((v.data[q] * v.slope + v.inter) - lo) / w * 255;
        g = g < 0 ? 0 : g > 255 ? 255 : g;
        let R = g, G = g, B = g;
        const l = lab[q];
        if (l && a > 0) {
          const col = lut[l];
          const al = a * col[3] / 255;
          R = R * (1 - al) + col[0] * al; G = G * (1 - al) + col[1] * al; B = B * (1 - al) + col[2] * al;
        }
        const o = 4 * (r * P.w + c);
        px[o] = R; px[o + 1] = G; px[o + 2] = B; px[o + 3] = 255;
      }
      og.putImageData(img, 0, 0);
      const g = this.g, L = this.layout(P);
      g.fillStyle = '#000'; g.fillRect(0, 0, this.canvas.width, this.canvas.height);
      g.imageSmoothingEnabled = false;
      g.drawImage(this.off, L.x, L.y, L.dw, L.dh);
      // crosshair: the other two planes through the current position
      const [cx, cy] = P.of(this.pos[this.series]);
      g.strokeStyle = 'rgba(255,216,77,0.55)'; g.lineWidth = Math.max(1, dpr);
      if (this.crosshair) {  // with a gap of GAP_MM around the point, so that a lesion there stays visible
        const X = L.x + (cx + 0.5) * L.sx, Y = L.y + (cy + 0.5) * L.sy;
        const gx = GAP_MM / P.pw * L.sx, gy = GAP_MM / P.ph * L.sy;
        g.beginPath();
        g.moveTo(X, L.y); g.lineTo(X, Y - gy); g.moveTo(X, Y + gy); g.lineTo(X, L.y + L.dh);
        g.moveTo(L.x, Y); g.lineTo(X - gx, Y); g.moveTo(X + gx, Y); g.lineTo(L.x + L.dw, Y);
        g.stroke();
      }
      const t = LETTERS[this.view];
      g.fillStyle = '#ffd84d'; g.font = `bold ${Math.round(14 * dpr)}px sans-serif`; g.textBaseline = 'middle';
      g.fillText(t[0], 6 * dpr, this.canvas.height / 2); g.fillText(t[1], this.canvas.width - 16 * dpr, this.canvas.height / 2);
      g.fillText(t[2], this.canvas.width / 2, 12 * dpr); g.fillText(t[3], this.canvas.width / 2, this.canvas.height - 12 * dpr);
    }
    voxelAt(ev) {  // canvas event -> current series voxel [k, j, i] (or null outside the image)
      const dpr = window.devicePixelRatio || 1;
      const rect = this.canvas.getBoundingClientRect();
      const P = this.plane(), L = this.layout(P);
      const c = Math.floor(((ev.clientX - rect.left) * dpr - L.x) / L.sx);
      const r = Math.floor(((ev.clientY - rect.top) * dpr - L.y) / L.sy);
      if (c < 0 || r < 0 || c >= P.w || r >= P.h) return null;
      return P.at(c, r);
    }
    _listen() {
      const cv = this.canvas;
      let drag = null;
      cv.addEventListener('contextmenu', (e) => e.preventDefault());
      cv.addEventListener('wheel', (e) => {
        e.preventDefault();
        if (e.ctrlKey || this.mode === 'pan') this.zoom(e.deltaY < 0 ? 1.15 : 1 / 1.15);
        else this.step(e.deltaY > 0 ? 1 : -1);
      }, {passive: false});
      cv.addEventListener('mousedown', (e) => {
        cv.focus();
        const how = e.button === 2 ? 'window' : e.button === 1 ? 'pan' : this.mode;
        drag = {how, x: e.clientX, y: e.clientY, win: this.win.slice(), pan: this.pan.slice(), moved: false};
        if (how === 'crosshair') this._pick(e, true);
        e.preventDefault();
      });
      window.addEventListener('mouseup', () => { drag = null; });
      cv.addEventListener('mousemove', (e) => {
        const kji = this.voxelAt(e);
        this.ctx.onHover(kji ? this.vol().toScan(kji) : null, this.series);
        if (!drag) return;
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        const dpr = window.devicePixelRatio || 1;
        if (drag.how === 'pan') { this.pan = [drag.pan[0] + dx * dpr, drag.pan[1] + dy * dpr]; this.render(); }
        else if (drag.how === 'window') {
          this.win = [drag.win[0] + dy * 2, Math.max(1, drag.win[1] + dx * 4)];
          this.render(); this.ctx.onWindow(this.win);
        } else this._pick(e, false);
      });
      cv.addEventListener('mouseleave', () => this.ctx.onHover(null, this.series));
    }
    _pick(e, isClick) {
      const kji = this.voxelAt(e);
      if (!kji) return;
      const P = this.plane();
      const p = this.pos[this.series];
      for (let a = 0; a < 3; a++) if (a !== P.normal) p[a] = kji[a];
      this.render();
      const scan = this.vol().toScan(p);
      this.ctx.onMove(scan, this.series);
      if (isClick) this.ctx.onClick(this.vol().toScan(kji), this.series);
    }
    // --- the viewer interface -------------------------------------------------------------
    setSeries(name, scanZYX) { this.series = name; if (scanZYX) this.goto(scanZYX); else this.render(); this._moved(); }
    setView(name) { this.view = name === 'mpr' ? 'axial' : name; this.pan = [0, 0]; this.render(); this._moved(); }
    setWindow(level, width) { this.win = [level, width]; this.render(); }
    setOverlay(on, opacity) { this.overlay = on; this.opacity = opacity; this.render(); }
    setMode(mode) { this.mode = mode; }
    setCrosshair(on) { this.crosshair = on; this.render(); }
    zoom(f) { this.zoomF = Math.min(20, Math.max(0.5, this.zoomF * f)); this.render(); }
    resetZoom() { this.zoomF = 1; this.pan = [0, 0]; this.render(); }
    goto(scanZYX) {
      const v = this.vol();
      const kji = v.toVol(scanZYX).map((x, a) => Math.min(v.dims[a] - 1, Math.max(0, x)));
      this.pos[this.series] = kji; this.render(); this._moved();
    }
    normalAxis() { return this.plane().normal; }
    sliceCount() { return this.vol().dims[this.normalAxis()]; }
    sliceIndex() { return this.pos[this.series][this.normalAxis()]; }
    setSlice(idx) {
      const a = this.normalAxis();
      this.pos[this.series][a] = Math.min(this.vol().dims[a] - 1, Math.max(0, idx));
      this.render(); this._moved();
    }
    // step +1 = next slice down the screen's stack: inferior (axial), posterior (coronal), patient left (sagittal)
    step(d) {
      const a = this.normalAxis(), F = this.ctx.D.ct.flips;
      const sign = a === 0 ? (F.z_up ? -1 : 1) : a === 1 ? (F.rows ? -1 : 1) : (F.cols ? -1 : 1);
      this.setSlice(this.sliceIndex() + sign * d);
    }
    position() { return this.vol().toScan(this.pos[this.series]); }
    screenOf(scanZYX) {  // client (CSS px) coordinates of a voxel's centre on the current plane
      const dpr = window.devicePixelRatio || 1, rect = this.canvas.getBoundingClientRect();
      const P = this.plane(), L = this.layout(P), [c, r] = P.of(this.vol().toVol(scanZYX));
      return [rect.left + (L.x + (c + 0.5) * L.sx) / dpr, rect.top + (L.y + (r + 0.5) * L.sy) / dpr];
    }
    labelsChanged(heart, scan) { this.labels = {heart, scan}; this.render(); }
    _moved() { this.ctx.onMove(this.position(), this.series); }
  }
  return {create: Viewer.create};
})();
