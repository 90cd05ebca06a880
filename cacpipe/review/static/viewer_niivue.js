/* The NiiVue viewer (WebGL2): NiiVue is bundled into the page when it is built (the install step
   puts the bundle in cacpipe/review/static/vendor/; nothing is fetched at run time). Same
   interface as viewer_basic.js; create() throws when NiiVue or WebGL2 is missing, and the page
   then uses the basic viewer. Voxel indices from NiiVue are NIfTI (i, j, k) = (x, y, z). */
'use strict';
const CacNiiVueViewer = (function () {
  const DRAG = {crosshair: 8, pan: 3, window: 9};  // NiiVue DRAG_MODE values

  class Viewer {
    constructor(container, ctx, nv, canvas) {
      this.name = 'NiiVue';
      this.ctx = ctx; this.nv = nv; this.canvas = canvas; this.container = container;
      this.series = 'heart'; this.view = 'axial';
      this.win = [200, 800]; this.overlay = true; this.opacity = 0.5;
      this.labels = {heart: ctx.vols.heart.labels.data, scan: ctx.vols.scan.labels.data};
      this.pos = {};
      for (const [name, s] of Object.entries(ctx.vols)) this.pos[name] = s.ct.dims.map((n) => Math.floor(n / 2));
    }

    static async create(container, ctx) {
      if (typeof niivue === 'undefined' || !niivue.Niivue) throw new Error('the NiiVue bundle is not in this page');
      const probe = document.createElement('canvas').getContext('webgl2');
      if (!probe) throw new Error('this browser has no WebGL2');
      const canvas = document.createElement('canvas');
      canvas.setAttribute('aria-label', 'CT viewer (NiiVue)');
      canvas.tabIndex = 0;
      container.appendChild(canvas);
      const nv = new niivue.Niivue({
        backColor: [0, 0, 0, 1], isRadiologicalConvention: true, show3Dcrosshair: false, isColorbar: false,
        crosshairColor: [1, 0.85, 0.3, 0.6], crosshairWidth: 0.35, crosshairGap: 8, multiplanarShowRender: 0, isNearestInterpolation: true,
        dragMode: DRAG.window, dragModePrimary: DRAG.crosshair, dragAndDropEnabled: false, loadingText: '',
        logLevel: 'error', isOrientCube: false, showLegend: false,
      });
      try {
        await nv.attachToCanvas(canvas, false);
      } catch (e) {
        canvas.remove();
        throw e;
      }
      const v = new Viewer(container, ctx, nv, canvas);
      await v._load('heart');
      v._listen();
      return v;
    }

    vol() { return this.ctx.vols[this.series].ct; }
    lut() {
      const L = this.ctx.lut, n = L.length;
      const cm = {R: [], G: [], B: [], A: [], I: [], labels: []};
      for (let i = 0; i < n; i++) {
        cm.R.push(L[i][0]); cm.G.push(L[i][1]); cm.B.push(L[i][2]); cm.A.push(i ? L[i][3] : 0); cm.I.push(i);
        cm.labels.push(this.ctx.labelNames[i] || String(i));
      }
      return cm;
    }
    async _load(series) {
      const nv = this.nv;
      while (nv.volumes.length) nv.removeVolume(nv.volumes[nv.volumes.length - 1]);
      const set = this.ctx.vols[series];
      await nv.loadFromArrayBuffer(set.ct.niftiCopy(), series + '.nii');
      await nv.loadFromArrayBuffer(set.labels.withData(this.labels[series]), series + '_labels.nii');
      nv.volumes[1].setColormapLabel(this.lut());
      this.series = series;
      this._applyWindow();
      nv.setOpacity(1, this.overlay ? this.opacity : 0);
      this._setView(this.view);
      this._gotoVox(this.pos[series]);
    }
    _applyWindow() {
      const v = this.nv.volumes[0];
      v.cal_min = this.win[0] - this.win[1] / 2; v.cal_max = this.win[0] + this.win[1] / 2;
      this.nv.updateGLVolume();
    }
    _setView(name) {
      const nv = this.nv;
      const t = {axial: nv.sliceTypeAxial, coronal: nv.sliceTypeCoronal, sagittal: nv.sliceTypeSagittal, mpr: nv.sliceTypeMultiplanar};
      this.view = name;
      nv.setSliceType(t[name]);
    }
    _kji() {  // crosshair -> current series voxel [k, j, i] (NiiVue's own voxels are RAS-reoriented: go through mm)
      const vol = this.vol();
      return vol.mmToKji(this.nv.frac2mm(this.nv.scene.crosshairPos)).map((x, a) => Math.min(vol.dims[a] - 1, Math.max(0, x)));
    }
    _gotoVox(kji) {
      this.pos[this.series] = kji.slice();
      this.nv.scene.crosshairPos = this.nv.mm2frac(this.vol().kjiToMm(kji));
      this.nv.drawScene();
      this._moved();
    }
    _eventVoxel(e) {
      const rect = this.canvas.getBoundingClientRect();
      const dpr = this.nv.uiData.dpr || window.devicePixelRatio || 1;
      const frac = this.nv.canvasPos2frac([(e.clientX - rect.left) * dpr, (e.clientY - rect.top) * dpr]);
      if (!frac || frac[0] < 0) return null;
      const kji = this.vol().mmToKji(this.nv.frac2mm(frac));
      return this.vol().inside(kji[0], kji[1], kji[2]) ? kji : null;
    }
    _listen() {
      const nv = this.nv, cv = this.canvas;
      nv.onLocationChange = () => { this.pos[this.series] = this._kji(); this._moved(); };
      let down = null;
      cv.addEventListener('mousedown', (e) => { down = {x: e.clientX, y: e.clientY, b: e.button}; });
      cv.addEventListener('mouseup', (e) => {
        if (down && down.b === 0 && Math.abs(e.clientX - down.x) + Math.abs(e.clientY - down.y) < 4) {
          const kji = this._eventVoxel(e);
          if (kji) this.ctx.onClick(this.vol().toScan(kji), this.series);
        }
        if (down && down.b !== 0) {  // W/L drag with the right button: report the new window
          const v = nv.volumes[0];
          this.win = [(v.cal_min + v.cal_max) / 2, Math.max(1, v.cal_max - v.cal_min)];
          this.ctx.onWindow(this.win);
        }
        down = null;
      });
      cv.addEventListener('mousemove', (e) => {
        const kji = this._eventVoxel(e);
        this.ctx.onHover(kji ? this.vol().toScan(kji) : null, this.series);
      });
      cv.addEventListener('mouseleave', () => this.ctx.onHover(null, this.series));
      cv.addEventListener('contextmenu', (e) => e.preventDefault());
      cv.addEventListener('wheel', (e) => {  // Ctrl+wheel zooms (NiiVue's own wheel scrolls slices)
        if (!e.ctrlKey) return;
        e.preventDefault(); e.stopImmediatePropagation();
        this.zoom(e.deltaY < 0 ? 1.15 : 1 / 1.15);
      }, {capture: true, passive: false});
    }
    // --- the viewer interface -------------------------------------------------------------
    async setSeries(name, scanZYX) {
      if (name !== this.series) {
        this.pos[this.series] = this._kji();
        await this._load(name);
      }
      if (scanZYX) this.goto(scanZYX);
    }
    setView(name) { this._setView(name); this._gotoVox(this._kji()); }
    setWindow(level, width) { this.win = [level, width]; this._applyWindow(); }
    setOverlay(on, opacity) { this.overlay = on; this.opacity = opacity; this.nv.setOpacity(1, on ? opacity : 0); }
    setMode(mode) { this.nv.opts.dragModePrimary = DRAG[mode]; }
    setCrosshair(on) { this.nv.setCrosshairWidth(on ? 0.35 : 0); this.nv.drawScene(); }
    zoom(f) {
      const p = this.nv.scene.pan2Dxyzmm;
      this.nv.setPan2Dxyzmm([p[0], p[1], p[2], Math.min(20, Math.max(0.5, p[3] * f))]);
    }
    resetZoom() { this.nv.setPan2Dxyzmm([0, 0, 0, 1]); }
    goto(scanZYX) {
      const v = this.vol();
      this._gotoVox(v.toVol(scanZYX).map((x, a) => Math.min(v.dims[a] - 1, Math.max(0, x))));
    }
    normalAxis() { return this.view === 'coronal' ? 1 : this.view === 'sagittal' ? 2 : 0; }
    sliceCount() { return this.vol().dims[this.normalAxis()]; }
    sliceIndex() { return this._kji()[this.normalAxis()]; }
    setSlice(idx) {
      const a = this.normalAxis(), kji = this._kji();
      kji[a] = Math.min(this.vol().dims[a] - 1, Math.max(0, idx));
      this._gotoVox(kji);
    }
    step(d) {
      const a = this.normalAxis(), F = this.ctx.D.ct.flips;
      const sign = a === 0 ? (F.z_up ? -1 : 1) : a === 1 ? (F.rows ? -1 : 1) : (F.cols ? -1 : 1);
      this.setSlice(this.sliceIndex() + sign * d);
    }
    position() { return this.vol().toScan(this._kji()); }
    labelsChanged(heart, scan) {
      this.labels = {heart, scan};
      const img = this.nv.volumes[1] && this.nv.volumes[1].img;
      if (img) { img.set(this.labels[this.series]); this.nv.updateGLVolume(); }
    }
    _moved() { this.ctx.onMove(this.position(), this.series); }
  }
  return {create: Viewer.create};
})();
