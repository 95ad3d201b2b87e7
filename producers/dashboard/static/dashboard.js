// Live updates for the callqueue supervisor dashboard: one Server-Sent Events stream per page.
// The server sends the page's parts, rendered (and escaped) from its latest figures; they replace
// the elements with the same ids. The stream is closed while the tab is hidden and opened again
// when it shows, so a dashboard left open all day costs nothing while nobody looks at it.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-live");
  var state = document.getElementById("live-state");
  var source = null;

  function show(text) { if (state) { state.textContent = text; } }

  function connect() {
    if (!url || source) { return; }
    source = new EventSource(url);
    source.addEventListener("update", function (event) {
      var parts = JSON.parse(event.data);
      Object.keys(parts).forEach(function (id) {
        var element = document.getElementById(id);
        if (element) { element.innerHTML = parts[id]; }
      });
      document.body.setAttribute("data-updated", String(Date.now()));
      show("live");
    });
    source.onerror = function () { show("reconnecting…"); };
  }

  function disconnect() {
    if (source) { source.close(); source = null; show("paused"); }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { disconnect(); } else { connect(); }
  });
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
  connect();
}());
