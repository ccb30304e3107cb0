// Live progress of a campaign's run: polls progress.json (the report's figures) every second
// while anything is queued or sending, without reloading the page.
(function () {
  var box = document.getElementById("progress");
  if (!box) return;
  var fmt = function (n) { return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, "."); };
  var set = function (key, text) {
    var el = box.querySelector('[data-live="' + key + '"]');
    if (el) el.textContent = text;
  };
  var idle = 0;
  function tick() {
    fetch(box.dataset.url, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (p) {
        ["done", "deliveries", "pending", "delivered", "failures"].forEach(function (k) { set(k, fmt(p[k])); });
        set("percent", p.percent_text);
        if (p.run) set("run", "#" + p.run.id + " — " + p.run.status_vi);
        set("updated", new Date().toLocaleTimeString("vi-VN"));
        box.querySelector("[data-live-bar]").style.width = p.percent + "%";
        box.dataset.runStatus = p.run ? p.run.status : "";
        idle = (p.pending === 0 && (!p.run || p.run.status !== "running")) ? idle + 1 : 0;
        setTimeout(tick, idle > 5 ? 5000 : 1000);
      })
      .catch(function () { setTimeout(tick, 5000); });
  }
  tick();
})();
