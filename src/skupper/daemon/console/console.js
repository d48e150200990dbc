// The live console: polls GET api/network once a second and draws the network.
// Every name comes from the network, so it is written as text (textContent), never as
// markup. The token arrives in the page's address and is sent as a bearer token.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const POLL_MS = 1000;
  const token = new URLSearchParams(window.location.search).get("token") || "";
  let previous = null; // the last document, for rates

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }

  function rate(now, before, key, pick) {
    if (!before) return null;
    const dt = now.time - before.time;
    const was = before.counters[key];
    const is = now.counters[key];
    if (!(dt > 0) || was === undefined || is === undefined) return null;
    return Math.max(0, (pick(is) - pick(was)) / dt);
  }

  function human(bytesPerSecond) {
    if (bytesPerSecond === null) return "-";
    const units = ["B/s", "KB/s", "MB/s", "GB/s"];
    let value = bytesPerSecond;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit++; }
    return value.toFixed(unit === 0 ? 0 : 1) + " " + units[unit];
  }

  function counters(doc) {
    const out = {};
    for (const link of doc.links) {
      if (link.bytesSent !== undefined) out["link:" + link.name] = link.bytesSent + link.bytesReceived;
    }
    for (const svc of doc.services) {
      if (svc.bytesIn !== undefined) out["svc:" + svc.routingKey] = svc.bytesIn + svc.bytesOut;
    }
    return out;
  }

  function drawGraph(doc) {
    const svg = document.getElementById("graph");
    for (const node of Array.from(svg.querySelectorAll("g"))) node.remove();
    // Sites named only by a link that is down (no longer reachable) are drawn too.
    const known = new Set(doc.sites.map((site) => site.name));
    const sites = doc.sites.slice();
    for (const link of doc.links) {
      for (const name of [link.fromSite, link.toSite]) {
        if (!known.has(name)) {
          known.add(name);
          sites.push({ name: name, platform: "unreachable", version: "-", unreachable: true });
        }
      }
    }
    const where = {};
    const cx = 400, cy = 235, radius = sites.length > 1 ? 170 : 0;
    sites.forEach((site, i) => {
      const angle = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, sites.length);
      where[site.name] = [cx + radius * Math.cos(angle), cy + radius * Math.sin(angle)];
    });
    const links = el("g", { id: "graph-links" });
    for (const link of doc.links) {
      const a = where[link.fromSite], b = where[link.toSite];
      if (!a || !b) continue;
      const g = el("g", { class: "link " + link.state, "data-link": link.name });
      g.appendChild(el("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1] }));
      const label = link.name + " · cost " + link.cost + " · " + link.state +
        (link.rate !== null && link.rate !== undefined ? " · " + human(link.rate) : "");
      g.appendChild(el("text", { x: (a[0] + b[0]) / 2, y: (a[1] + b[1]) / 2 - 6 }, label));
      links.appendChild(g);
    }
    svg.appendChild(links);
    const nodes = el("g", { id: "graph-sites" });
    for (const site of sites) {
      const [x, y] = where[site.name];
      const g = el("g", { class: "site" + (site.name === doc.site.name ? " self" : "") +
                                   (site.unreachable ? " unreachable" : ""),
                          "data-site": site.name });
      g.appendChild(el("circle", { cx: x, cy: y, r: 26 }));
      g.appendChild(el("text", { class: "name", x: x, y: y + 44 }, site.name));
      g.appendChild(el("text", { class: "detail", x: x, y: y + 58 },
                       site.platform + " · " + site.version));
      const services = doc.services.filter((svc) =>
        svc.listeners.some((l) => l.site === site.name) || svc.connectors.some((c) => c.site === site.name));
      if (services.length) {
        g.appendChild(el("text", { class: "detail", x: x, y: y + 72 },
                         services.map((svc) => svc.routingKey).join(", ")));
      }
      nodes.appendChild(g);
    }
    svg.appendChild(nodes);
  }

  function drawTables(doc) {
    const links = document.querySelector("#links tbody");
    links.replaceChildren();
    for (const link of doc.links) {
      const row = document.createElement("tr");
      row.dataset.link = link.name;
      cell(row, link.fromSite); cell(row, link.toSite); cell(row, link.name);
      cell(row, String(link.cost)); cell(row, link.state, link.state);
      cell(row, link.rttSeconds !== undefined ? (link.rttSeconds * 1000).toFixed(1) + " ms" : "-");
      cell(row, human(link.rate === undefined ? null : link.rate));
      links.appendChild(row);
    }
    const services = document.querySelector("#services tbody");
    services.replaceChildren();
    for (const svc of doc.services) {
      const row = document.createElement("tr");
      row.dataset.service = svc.routingKey;
      cell(row, svc.routingKey);
      cell(row, svc.listeners.map((l) => l.site + "/" + l.name).join(", ") || "-");
      cell(row, svc.connectors.map((c) => c.site + "/" + c.name).join(", ") || "-");
      cell(row, String(svc.openConnections || 0), "open-connections");
      cell(row, human(svc.rate === undefined ? null : svc.rate), "service-rate");
      services.appendChild(row);
    }
  }

  function render(doc) {
    doc.counters = counters(doc);
    for (const link of doc.links) link.rate = rate(doc, previous, "link:" + link.name, (v) => v);
    for (const svc of doc.services) svc.rate = rate(doc, previous, "svc:" + svc.routingKey, (v) => v);
    previous = doc;
    document.getElementById("site-name").textContent = "at site " + doc.site.name;
    const up = doc.links.filter((l) => l.state === "up").length;
    const count = (n, word) => n + " " + word + (n === 1 ? "" : "s");
    document.getElementById("summary").textContent = count(doc.sites.length, "site") + ", " +
      count(doc.links.length, "link") + " (" + up + " up), " + count(doc.services.length, "service");
    drawGraph(doc);
    drawTables(doc);
    document.getElementById("updated").textContent = "Updated " + new Date().toLocaleTimeString();
  }

  async function poll() {
    try {
      const response = await fetch("api/network", {
        headers: { Authorization: "Bearer " + token }, cache: "no-store",
      });
      if (response.status === 401) {
        document.getElementById("summary").textContent =
          "Not authorized: open the address that \"skupper network console\" prints.";
        return;
      }
      render(await response.json());
    } catch (error) {
      document.getElementById("summary").textContent = "The site is not answering: " + error;
    }
    window.setTimeout(poll, POLL_MS);
  }

  poll();
})();
