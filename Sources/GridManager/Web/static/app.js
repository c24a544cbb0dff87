// CampusGrid dashboard: local times, live regions over Server-Sent Events (reconnecting with backoff, so a manager
// restart only pauses the page), and the submit form's cost preview. No framework, no build step.
(function () {
  "use strict";

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        t.title = t.getAttribute("datetime");
        t.textContent = d.toLocaleString([], { dateStyle: "medium", timeStyle: "medium" });
      }
    });
  }

  function setStatus(el, state, text) {
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text;
  }

  // --- Live regions -----------------------------------------------------------------------------------------------
  function startLive(url) {
    var status = document.getElementById("live-status");
    var log = document.getElementById("log");
    var source = null;
    var delay = 500;
    var attempts = 0;

    function followLog() {
      return log && log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    }

    function connect() {
      var u = url;
      if (log) u += "&log=" + encodeURIComponent(log.dataset.offset || "0");
      source = new EventSource(u);
      source.onopen = function () {
        // Counted for tests and the curious: how many times this page (re)connected.
        document.body.dataset.liveOpens = String(Number(document.body.dataset.liveOpens || "0") + 1);
        delay = 500;
        attempts = 0;
        setStatus(status, "live", "● live");
      };
      source.addEventListener("region", function (e) {
        var m = JSON.parse(e.data);
        var el = document.getElementById(m.id);
        if (el) {
          el.innerHTML = m.html; // rendered by the server's templates, every user string escaped there
          localTimes(el);
        }
      });
      source.addEventListener("log", function (e) {
        var m = JSON.parse(e.data);
        if (!log) return;
        var stick = followLog();
        if (m.text) log.appendChild(document.createTextNode(m.text));
        log.dataset.offset = String(m.next);
        if (m.done) log.dataset.done = "1";
        if (stick) log.scrollTop = log.scrollHeight;
      });
      source.addEventListener("gone", function () {
        source.close();
        setStatus(status, "off", "signed out");
      });
      source.onerror = function () {
        // Our own reconnect, so a refused connection (manager down) is retried too; bounded backoff.
        source.close();
        attempts += 1;
        setStatus(status, "reconnecting", "reconnecting…");
        window.setTimeout(connect, delay);
        delay = Math.min(delay * 2, 4000);
      };
    }
    connect();
    window.addEventListener("pagehide", function () { if (source) source.close(); });
  }

  // --- Cost preview -----------------------------------------------------------------------------------------------
  function startCostPreview(form) {
    var hold = document.getElementById("cost-hold");
    var after = document.getElementById("cost-after");
    var error = document.getElementById("cost-error");
    var seq = 0;
    function preview() {
      var mine = ++seq;
      var q = ["cpus", "ram_gb", "gpus", "minutes"].map(function (n) {
        return n + "=" + encodeURIComponent(form.elements[n].value);
      }).join("&");
      if (form.elements["verify"] && form.elements["verify"].checked) q += "&verify=1";
      fetch("/submit/preview?" + q, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (p) {
          if (mine !== seq) return;
          hold.textContent = p.error ? "—" : String(p.hold);
          after.textContent = p.error || p.after === undefined || p.after === null ? "—" : String(p.after);
          error.textContent = p.error ? p.error : (p.after < 0 ? "Not enough credits for this job." : "");
        })
        .catch(function () { /* keep the last figures */ });
    }
    form.querySelectorAll("[data-cost]").forEach(function (i) { i.addEventListener("input", preview); i.addEventListener("change", preview); });
    var file = document.getElementById("script_file");
    var script = document.getElementById("script");
    var name = document.getElementById("name");
    if (file && script) {
      file.addEventListener("change", function () {
        var f = file.files && file.files[0];
        if (!f || f.size > 2000000) return;
        var reader = new FileReader();
        reader.onload = function () {
          script.value = String(reader.result);
          if (name && !name.value) name.value = f.name;
        };
        reader.readAsText(f);
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    var log = document.getElementById("log");
    if (log) log.scrollTop = log.scrollHeight;
    if (document.body.dataset.live && window.EventSource) startLive(document.body.dataset.live);
    var form = document.getElementById("submit-form");
    if (form) startCostPreview(form);
  });
})();
