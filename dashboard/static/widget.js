// <pulsegate-widget kind="resources|performance|health|tasks|backpressure">
//
// A live pulsegate widget for the app's own admin templates. Load it once
// per page from the same origin as the proxy port:
//
//   <script src="/admin/responsiveness/widget.js"></script>
//   <pulsegate-widget kind="health"></pulsegate-widget>
//
// Each element renders into its own shadow root with its own stylesheet,
// so the app's CSS neither leaks in nor is touched. All widgets on a page
// share one Server-Sent Events connection. Requests go to /admin/api/…
// with the browser's same-origin credentials (the pulsegate session
// cookie, or the app's own admin session when delegated auth is on).
(function () {
  'use strict';
  if (window.customElements.get('pulsegate-widget')) return;
  var script = document.currentScript;
  var base = new URL('./', (script && script.src) || location.origin + '/admin/responsiveness/widget.js');
  var widgets = null; // the shared module, imported once

  function load() {
    if (!widgets) widgets = import(new URL('static/js/widgets.js', base).href);
    return widgets;
  }

  class PulsegateWidget extends HTMLElement {
    static get observedAttributes() {
      return ['kind'];
    }

    connectedCallback() {
      if (!this.shadowRoot) {
        var root = this.attachShadow({ mode: 'open' });
        var chartCSS = document.createElement('link');
        chartCSS.rel = 'stylesheet';
        chartCSS.href = new URL('static/vendor/uplot/uPlot.min.css', base).href;
        var css = document.createElement('link');
        css.rel = 'stylesheet';
        css.href = new URL('static/widgets.css', base).href;
        this._box = document.createElement('div');
        this._box.className = 'pg-root';
        root.append(chartCSS, css, this._box);
      }
      this._render();
    }

    disconnectedCallback() {
      if (this._stop) this._stop();
      this._stop = null;
    }

    attributeChangedCallback() {
      if (this.isConnected && this.shadowRoot) this._render();
    }

    _render() {
      var self = this;
      var kind = this.getAttribute('kind') || 'health';
      if (this._stop) this._stop();
      this._stop = null;
      load().then(function (m) {
        if (!self.isConnected) return;
        if (m.EMBEDDABLE.indexOf(kind) < 0) {
          self._box.textContent = 'pulsegate-widget: kind must be one of ' + m.EMBEDDABLE.join(', ');
          return;
        }
        self._stop = m.mount(kind, self._box, { embedded: true, compact: true });
      }, function (err) {
        self._box.textContent = 'pulsegate widget could not load: ' + err.message;
      });
    }
  }

  window.customElements.define('pulsegate-widget', PulsegateWidget);
})();
