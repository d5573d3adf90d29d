// resgraph's viewer: lays out and draws the graph that resgraph/viewer/__init__.py put into the page as JSON,
// with pan and zoom, expand / collapse of block instances and repeats, hover, search and source lines.
// Text from the spec is only ever shown through textContent and SVG text nodes, never parsed as HTML.
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const readJSON = (id) => JSON.parse($(id).textContent);
  const CONFIG = readJSON("resgraph-config");
  let STATE = readJSON("resgraph-state");

  // ---------------------------------------------------------------- small helpers
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const key in attrs || {}) node.setAttribute(key, attrs[key]);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function sv(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const key in attrs || {}) node.setAttribute(key, attrs[key]);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  const fmt = (n) => Number(n || 0).toLocaleString("en-US");
  function si(n) {
    n = Number(n || 0);
    for (const [unit, scale] of [["G", 1e9], ["M", 1e6], ["K", 1e3]]) if (n >= scale) return (n / scale).toFixed(2) + " " + unit;
    return String(n);
  }
  const dims = (shape) => (shape ? shape.join("\u00d7") : "?");
  function facts(rows) {
    const table = el("table", { class: "facts" });
    for (const [key, value, cls] of rows) {
      const tr = el("tr");
      tr.append(el("th", {}, key), el("td", cls ? { class: cls } : {}, value));
      table.append(tr);
    }
    return table;
  }

  // Node colours by op family (as the static diagram's), and their borders.
  const FAMILIES = [
    [/^(conv|linear|matmul|embedding|lstm|gru|rnn|attention|multihead)/, "#e3f2fd", "#90caf9"],
    [/norm/, "#fff8e1", "#ffd54f"],
    [/^(add|sub|mul|concat|cat|stack|split|chunk)/, "#e8f5e9", "#81c784"],
    [/^(relu|gelu|silu|sigmoid|tanh|hardswish|hardsigmoid|softmax|elu|leaky|mish|prelu|selu|swish)/, "#f3e5f5", "#ce93d8"],
    [/pool/, "#e0f2f1", "#80cbc4"],
    [/^input$/, "#eceff1", "#90a4ae"],
  ];
  function family(op) {
    for (const [re, fill, stroke] of FAMILIES) if (re.test(op)) return [fill, stroke];
    return ["#f5f5f5", "#bdbdbd"];
  }
  const SKIP_TEXT = { identity: "identity", project: "projection", pad: "zero-pad" };

  // Text widths, measured once per string with the page's font.
  const measureContext = document.createElement("canvas").getContext("2d");
  const widthCache = new Map();
  function textWidth(text, font) {
    const key = font + "\u0000" + text;
    let width = widthCache.get(key);
    if (width === undefined) {
      measureContext.font = font;
      width = measureContext.measureText(text).width;
      widthCache.set(key, width);
    }
    return width;
  }
  const SANS = getComputedStyle(document.body).fontFamily || "sans-serif";
  const FONT = { name: "600 12px " + SANS, label: "11px " + SANS, shape: "10.5px monospace" };

  // ---------------------------------------------------------------- the model
  let G = null;               // the graph data
  let chains = [];            // per node: its scopes, outermost first
  let scopeStats = [];        // per scope: params, macs, nodes
  const collapsed = new Set(); // names of collapsed scopes (names survive a reload in the playground)
  let view = null;            // the current layout
  let selected = null;        // name of the selected node
  let searchTerm = "";

  function prepare(graph, first) {
    G = graph;
    chains = G.nodes.map((node) => {
      const chain = [];
      for (let s = node.scope; s >= 0; s = G.scopes[s].parent) chain.unshift(s);
      return chain;
    });
    scopeStats = G.scopes.map(() => ({ params: 0, macs: 0, nodes: 0 }));
    G.nodes.forEach((node, i) => {
      for (const s of chains[i]) {
        scopeStats[s].params += node.params || 0;
        scopeStats[s].macs += node.macs || 0;
        scopeStats[s].nodes += 1;
      }
    });
    if (first && G.depth !== null && G.depth !== undefined) {
      for (const scope of G.scopes) if (scope.level >= G.depth) collapsed.add(scope.name);
    }
  }

  function visibleKey(i) {
    for (const s of chains[i]) if (collapsed.has(G.scopes[s].name)) return "s" + s;
    return "n" + i;
  }

  // ---------------------------------------------------------------- layout
  // A layered drawing (Sugiyama): ranks by longest path, long edges cut by dummy points, rank order by
  // barycentres, x by weighted neighbour averages under minimum separations that leave room for the
  // frames of the blocks; the main input of a node (its first) pulls hardest, so a chain stays straight
  // and its skip arcs bend beside it.
  function layout() {
    const { vertices, byKey, edges } = visibleGraph();
    const rankCount = assignRanks(vertices);
    const { layers, up, down } = cutLongEdges(vertices, edges, rankCount);
    orderRanks(layers, up, down);
    placeX(layers, up, down);
    const { rankTop, rankHeight, bottom } = placeY(vertices, layers);
    const frames = frameBoxes(vertices);
    widenForTitles(frames);
    let minX = Infinity, maxX = -Infinity, maxY = bottom + 20;
    for (const layer of layers) for (const v of layer) { minX = Math.min(minX, v.x - v.w / 2 - 4); maxX = Math.max(maxX, v.x + v.w / 2 + 4); }
    for (const f of frames.values()) { minX = Math.min(minX, f[0]); maxX = Math.max(maxX, f[2]); maxY = Math.max(maxY, f[3] + 20); }
    const shift = 24 - minX;
    for (const layer of layers) for (const v of layer) v.x += shift;
    for (const f of frames.values()) { f[0] += shift; f[2] += shift; }
    return { vertices, byKey, edges, frames, rankTop, rankHeight, width: maxX - minX + 48, height: maxY };
  }

  // The boxes drawn now (a node, or a collapsed block standing for its nodes, and an output marker per output)
  // and the edges between them, one per pair; the first input of a node weighs most.
  function visibleGraph() {
    const vertices = [];
    const byKey = new Map();
    function vertex(key, make) {
      let v = byKey.get(key);
      if (!v) {
        v = make();
        v.key = key; v.preds = []; v.succs = []; v.order = vertices.length;
        byKey.set(key, v);
        vertices.push(v);
      }
      return v;
    }
    const keyOf = G.nodes.map((_, i) => visibleKey(i));
    G.nodes.forEach((node, i) => {
      const key = keyOf[i];
      if (key[0] === "n") vertex(key, () => nodeVertex(i));
      else vertex(key, () => groupVertex(Number(key.slice(1))));
    });
    const edges = [];
    const seen = new Set();
    function connect(u, v, kind, weight) {
      const id = u.key + ">" + v.key;
      if (seen.has(id)) return;
      seen.add(id);
      const edge = { u, v, kind, weight };
      edges.push(edge);
      u.succs.push(edge); v.preds.push(edge);
    }
    G.nodes.forEach((node, i) => {
      const v = byKey.get(keyOf[i]);
      node.inputs.forEach((j, position) => {
        const u = byKey.get(keyOf[j]);
        if (u === v) return;
        const kind = node.skips ? node.skips[position] : null;
        connect(u, v, kind || null, position === 0 ? 4 : 1);
      });
    });
    G.outputs.forEach((i, k) => {
      const u = byKey.get(keyOf[i]);
      const title = G.output_keys && G.output_keys[k] ? "output " + G.output_keys[k] : "output";
      const v = vertex("o" + k, () => terminalVertex(title, G.nodes[i].shape, []));
      connect(u, v, null, 4);
    });
    return { vertices, byKey, edges };
  }

  // Ranks by longest path from the sources; returns how many there are.
  function assignRanks(vertices) {
    const indegree = new Map(vertices.map((v) => [v, v.preds.length]));
    const queue = vertices.filter((v) => v.preds.length === 0);
    for (const v of queue) v.rank = 0;
    for (let head = 0; head < queue.length; head++) {
      const u = queue[head];
      for (const e of u.succs) {
        e.v.rank = Math.max(e.v.rank || 0, u.rank + 1);
        indegree.set(e.v, indegree.get(e.v) - 1);
        if (indegree.get(e.v) === 0) queue.push(e.v);
      }
    }
    for (const v of vertices) if (v.rank === undefined) v.rank = 0;   // not reached (cannot happen in a DAG)
    return Math.max(0, ...vertices.map((v) => v.rank)) + 1;
  }

  // Dummy points where edges cross ranks, so that long edges bend around the boxes they pass; the segments
  // between adjacent ranks, by their upper (`down`) and lower (`up`) ends.
  function cutLongEdges(vertices, edges, rankCount) {
    const segments = [];
    const layers = Array.from({ length: rankCount }, () => []);
    for (const v of vertices) layers[v.rank].push(v);
    for (const e of edges) {
      e.points = [e.u];
      let previous = e.u;
      const common = commonPrefix(e.u.chain, e.v.chain);
      for (let r = e.u.rank + 1; r < e.v.rank; r++) {
        const d = { key: "d" + segments.length, dummy: true, rank: r, w: 4, h: 0, chain: common, order: previous.order + 0.5 };
        layers[r].push(d);
        segments.push({ a: previous, b: d, weight: previous === e.u ? e.weight : 8 });
        e.points.push(d);
        previous = d;
      }
      segments.push({ a: previous, b: e.v, weight: e.weight });
      e.points.push(e.v);
    }
    const up = new Map(), down = new Map();
    for (const layer of layers) for (const v of layer) { up.set(v, []); down.set(v, []); }
    for (const s of segments) { down.get(s.a).push(s); up.get(s.b).push(s); }
    return { layers, up, down };
  }

  // The order within each rank: barycentres of the neighbours, a few sweeps down and up.
  function orderRanks(layers, up, down) {
    for (const layer of layers) {
      layer.sort((a, b) => a.order - b.order);
      layer.forEach((v, i) => (v.pos = i));
    }
    for (let sweep = 0; sweep < 6; sweep++) {
      const downward = sweep % 2 === 0;
      const range = downward ? [...layers.keys()].slice(1) : [...layers.keys()].reverse().slice(1);
      for (const r of range) {
        const layer = layers[r];
        for (const v of layer) {
          const links = downward ? up.get(v) : down.get(v);
          const others = links.map((s) => (downward ? s.a : s.b));
          v.bary = others.length ? others.reduce((sum, o) => sum + o.pos, 0) / others.length : v.pos;
        }
        layer.sort((a, b) => a.bary - b.bary || a.pos - b.pos);
        layer.forEach((v, i) => (v.pos = i));
      }
    }
  }

  // The least distance between the centres of neighbours in a rank: room for the frames between them.
  const arcRoom = (v) => (v.group !== undefined && v.skips.length ? 10 + 7 * v.skips.length : 0);
  const separation = (a, b) => (a.w + b.w) / 2 + arcRoom(a) + (a.dummy || b.dummy ? 16 : 26) + 14 * levelsApart(a.chain, b.chain);

  // x: packed, then each point pulled towards its neighbours (weighted) within the separations; last, a box
  // under its main producer takes its x where there is room, so chains are straight.
  function placeX(layers, up, down) {
    for (const layer of layers) {
      let x = 0;
      layer.forEach((v, i) => {
        x = i === 0 ? v.w / 2 : x + separation(layer[i - 1], v);
        v.x = x;
      });
    }
    for (let pass = 0; pass < 12; pass++) {
      const downward = pass % 2 === 0;
      const order = downward ? layers : [...layers].reverse();
      for (const layer of order) {
        const wanted = layer.map((v) => {
          const links = pass > 7 ? [...up.get(v), ...down.get(v)] : downward ? up.get(v) : down.get(v);
          let total = 0, weight = 0;
          for (const s of links) {
            const other = s.a === v ? s.b : s.a;
            // a box follows the boxes it is joined to; the bends of long edges follow the boxes, not the reverse
            const w = !v.dummy && other.dummy ? 0.2 : s.weight;
            total += other.x * w; weight += w;
          }
          return weight ? total / weight : v.x;
        });
        const left = wanted.slice(), right = wanted.slice();
        for (let i = 1; i < layer.length; i++) left[i] = Math.max(left[i], left[i - 1] + separation(layer[i - 1], layer[i]));
        for (let i = layer.length - 2; i >= 0; i--) right[i] = Math.min(right[i], right[i + 1] - separation(layer[i], layer[i + 1]));
        layer.forEach((v, i) => (v.x = (left[i] + right[i]) / 2));
      }
    }
    for (const layer of layers) {
      layer.forEach((v, i) => {
        if (v.dummy) return;
        const main = up.get(v).filter((s) => !s.a.dummy).sort((a, b) => b.weight - a.weight)[0];
        if (!main || main.weight < 4) return;
        const x = main.a.x;
        if (i > 0 && x - layer[i - 1].x < separation(layer[i - 1], v)) return;
        if (i < layer.length - 1 && layer[i + 1].x - x < separation(v, layer[i + 1])) return;
        v.x = x;
      });
    }
  }

  // y: rank heights, with room for the titles of the blocks that open and the frames that close.
  function placeY(vertices, layers) {
    const bounds = new Map();   // scope -> [first rank, last rank]
    for (const v of vertices) for (const s of v.chain) {
      const b = bounds.get(s);
      if (!b) bounds.set(s, [v.rank, v.rank]);
      else { b[0] = Math.min(b[0], v.rank); b[1] = Math.max(b[1], v.rank); }
    }
    const opens = new Array(layers.length).fill(0), closes = new Array(layers.length).fill(0);
    for (const v of vertices) {
      opens[v.rank] = Math.max(opens[v.rank], v.chain.filter((s) => bounds.get(s)[0] === v.rank).length);
      closes[v.rank] = Math.max(closes[v.rank], v.chain.filter((s) => bounds.get(s)[1] === v.rank).length);
    }
    let y = 20 + 26 * opens[0];
    const rankTop = [], rankHeight = [];
    layers.forEach((layer, r) => {
      if (r > 0) y += 30 + 26 * opens[r] + 12 * closes[r - 1];
      const height = Math.max(0, ...layer.map((v) => v.h));
      rankTop.push(y); rankHeight.push(height);
      for (const v of layer) v.y = y + height / 2;
      y += height;
    });
    return { rankTop, rankHeight, bottom: y };
  }

  // The frame of each open block around its boxes, wider by a margin for each level of nesting inside.
  function frameBoxes(vertices) {
    const frames = new Map();
    for (const v of vertices) {
      const extra = v.group !== undefined ? 4 + arcRoom(v) : 0;   // the stacked look and the shortcut arc
      v.chain.forEach((s, k) => {
        const below = v.chain.length - k;
        const box = [v.x - v.w / 2 - 12 * below, v.y - v.h / 2 - 26 * below, v.x + v.w / 2 + extra + 12 * below,
          v.y + v.h / 2 + extra + 10 * below];
        const f = frames.get(s);
        if (!f) frames.set(s, box);
        else { f[0] = Math.min(f[0], box[0]); f[1] = Math.min(f[1], box[1]); f[2] = Math.max(f[2], box[2]); f[3] = Math.max(f[3], box[3]); }
      });
    }
    return frames;
  }

  // A frame narrower than its title grows to the right where that overlaps no frame outside its own line of
  // ancestors and descendants; its ancestors then grow to hold it.
  function widenForTitles(frames) {
    const related = (a, b) => {
      for (let p = a; p >= 0; p = G.scopes[p].parent) if (p === b) return true;
      for (let p = b; p >= 0; p = G.scopes[p].parent) if (p === a) return true;
      return false;
    };
    const deepestFirst = [...frames.keys()].sort((a, b) => G.scopes[b].level - G.scopes[a].level);
    for (const s of deepestFirst) {
      const f = frames.get(s), scope = G.scopes[s];
      const wanted = f[0] + 36 + textWidth("\u25be " + scopeTitle(scope), "650 11.5px " + SANS) +
        textWidth(scopeBlock(scope), "11.5px " + SANS);
      if (wanted > f[2]) {
        const free = [...frames].every(([t, g]) => t === s || related(s, t) ||
          g[0] >= wanted || g[2] <= f[0] || g[1] >= f[3] || g[3] <= f[1]);
        if (free) f[2] = wanted;
      }
      for (let p = scope.parent; p >= 0; p = G.scopes[p].parent) {
        const g = frames.get(p);
        if (g) g[2] = Math.max(g[2], frames.get(s)[2] + 12 * (G.scopes[s].level - G.scopes[p].level));
      }
    }
  }

  function commonPrefix(a, b) {
    let k = 0;
    while (k < a.length && k < b.length && a[k] === b[k]) k++;
    return a.slice(0, k);
  }
  const levelsApart = (a, b) => a.length + b.length - 2 * commonPrefix(a, b).length;

  function sized(v, lines) {
    v.lines = lines;
    v.w = Math.max(84, Math.ceil(Math.max(...lines.map((l) => textWidth(l.text, FONT[l.kind])))) + 22);
    v.h = 12 + 15 * lines.length;
    return v;
  }
  function nodeVertex(i) {
    const node = G.nodes[i];
    const lines = [{ text: node.local, kind: "name" }];
    if (node.op === "input") return terminalVertex(node.local, node.shape, [], i);
    if (node.label) lines.push({ text: node.label, kind: "label" });
    lines.push({ text: dims(node.shape), kind: "shape" });
    return sized({ node: i, chain: chains[i] }, lines);
  }
  function terminalVertex(name, shape, chain, i) {
    const v = sized({ terminal: true, chain, node: i }, [{ text: name, kind: "name" }, { text: dims(shape), kind: "shape" }]);
    return v;
  }
  function groupVertex(s) {
    const scope = G.scopes[s];
    const lines = [{ text: scope.name, kind: "name" }, { text: scopeBlock(scope), kind: "label" }];
    const out = scope.output >= 0 ? G.nodes[scope.output].shape : null;
    if (scope.outputs) scope.outputs.forEach((o, k) => lines.push({ text: ":" + k + " " + dims(o >= 0 ? G.nodes[o].shape : null), kind: "shape" }));
    else lines.push({ text: dims(out), kind: "shape" });
    const chain = [];
    for (let p = scope.parent; p >= 0; p = G.scopes[p].parent) chain.unshift(p);
    const v = sized({ group: s, chain }, lines);
    v.w += 14;
    const kinds = new Set();
    G.nodes.forEach((node, i) => { if (node.skips && chains[i].includes(s)) for (const k of node.skips) if (k) kinds.add(k); });
    v.skips = ["project", "pad", "identity"].filter((k) => kinds.has(k));
    return v;
  }
  // A frame's title: its name from the nearest enclosing block instance (`branch2.0` inside `inception3a`);
  // a title longer than its frame is cut short (the whole name is in the frame's tooltip).
  function scopeTitle(scope) {
    for (let p = scope.parent; p >= 0; p = G.scopes[p].parent) {
      const parent = G.scopes[p];
      if (!parent.repeat && scope.name.startsWith(parent.name + ".")) return scope.name.slice(parent.name.length + 1);
    }
    return scope.name;
  }
  function fitted(text, font, width) {
    if (textWidth(text, font) <= width) return text;
    let low = 0, high = text.length;
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      if (textWidth(text.slice(0, middle) + "\u2026", font) <= width) low = middle; else high = middle - 1;
    }
    return low ? text.slice(0, low) + "\u2026" : "";
  }
  const scopeBlock = (scope) => scope.block + (scope.repeat ? " \u00d7" + scope.count : "");

  // ---------------------------------------------------------------- drawing
  const svg = $("drawing");
  const viewport = sv("g", { id: "viewport" });
  const defs = sv("defs");
  for (const [id, color] of [["arrow", "#8d99ae"], ["arrow-identity", "#2e7d32"], ["arrow-project", "#1565c0"], ["arrow-pad", "#ef6c00"]]) {
    const marker = sv("marker", { id, viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse", markerUnits: "userSpaceOnUse" });
    marker.append(sv("path", { d: "M0,1 L10,5 L0,9 z", fill: color }));
    defs.append(marker);
  }
  svg.append(defs, viewport);
  const transform = { x: 0, y: 0, k: 1 };
  let placed = false;
  function applyTransform() {
    viewport.setAttribute("transform", `translate(${transform.x},${transform.y}) scale(${transform.k})`);
  }

  function render(anchor) {
    const before = anchor ? screenOf(anchor) : null;
    const started = performance.now();
    tooltip.hidden = true;
    view = layout();
    const clusters = sv("g", { class: "clusters" });
    const lines = sv("g", { class: "edges" });
    const boxes = sv("g", { class: "vertices" });
    const frameOrder = [...view.frames.keys()].sort((a, b) => G.scopes[a].level - G.scopes[b].level);
    for (const s of frameOrder) {
      const f = view.frames.get(s), scope = G.scopes[s];
      const g = sv("g", { class: "cluster" + (scope.repeat ? " repeat" : ""), "data-scope": scope.name });
      g.append(sv("rect", { class: "frame", x: f[0], y: f[1], width: f[2] - f[0], height: f[3] - f[1], rx: 10 }));
      const head = sv("g", { class: "head" });
      const room = f[2] - f[0] - 20;
      const title = fitted("\u25be " + scopeTitle(scope), "650 11.5px " + SANS, room);
      const titleWidth = textWidth(title, "650 11.5px " + SANS);
      const block = fitted(scopeBlock(scope), "11.5px " + SANS, room - titleWidth - 8);
      head.append(sv("rect", { x: f[0], y: f[1], width: f[2] - f[0], height: 22, fill: "transparent" }));
      head.append(sv("text", { class: "c-name", x: f[0] + 10, y: f[1] + 15 }, title));
      if (block) head.append(sv("text", { class: "c-block", x: f[0] + 18 + titleWidth, y: f[1] + 15 }, block));
      head.append(sv("title", {}, scope.name + " (" + scopeBlock(scope) + "): click to collapse"));
      head.addEventListener("click", (event) => { event.stopPropagation(); toggle(scope.name, true); });
      g.append(head);
      clusters.append(g);
    }
    for (const e of view.edges) drawEdge(lines, e);
    for (const v of view.vertices) boxes.append(drawVertex(v));
    viewport.replaceChildren(clusters, lines, boxes);
    highlightMatches();
    if (selected !== null) markSelected();
    if (!placed) { placeInitially(); placed = true; }
    else if (before) {
      const after = screenOf(anchor);
      if (after) { transform.x += before[0] - after[0]; transform.y += before[1] - after[1]; }
    }
    applyTransform();
    svg.setAttribute("data-drawn", String(view.vertices.length));
    svg.setAttribute("data-layout-ms", String(Math.round(performance.now() - started)));
  }

  function ports(e) {
    // spread the ends of the edges that meet at one box
    const outs = e.u.succs.slice().sort((a, b) => a.points[1].x - b.points[1].x);
    const ins = e.v.preds.slice().sort((a, b) => a.points[a.points.length - 2].x - b.points[b.points.length - 2].x);
    const spread = (list, v) => {
      const step = Math.min(14, v.w / (list.length + 1));
      return (list.indexOf(e) - (list.length - 1) / 2) * step;
    };
    return [spread(outs, e.u), spread(ins, e.v)];
  }
  function drawEdge(parent, e) {
    const [outX, inX] = ports(e);
    const pts = [[e.u.x + outX, e.u.y + e.u.h / 2]];
    for (const d of e.points.slice(1, -1)) {
      const r = d.rank;
      pts.push([d.x, view.rankTop[r]], [d.x, view.rankTop[r] + view.rankHeight[r]]);
    }
    pts.push([e.v.x + inX, e.v.y - e.v.h / 2 - 1]);
    let d = `M${pts[0][0].toFixed(1)},${pts[0][1].toFixed(1)}`;
    for (let i = 1; i < pts.length; i++) {
      const [x0, y0] = pts[i - 1], [x1, y1] = pts[i];
      if (x0 === x1) { d += ` L${x1.toFixed(1)},${y1.toFixed(1)}`; continue; }
      const m = (y1 - y0) / 2;
      d += ` C${x0.toFixed(1)},${(y0 + m).toFixed(1)} ${x1.toFixed(1)},${(y1 - m).toFixed(1)} ${x1.toFixed(1)},${y1.toFixed(1)}`;
    }
    const kind = e.kind;
    parent.append(sv("path", { class: "edge" + (kind ? " " + kind : ""), d, "marker-end": `url(#arrow${kind ? "-" + kind : ""})` }));
    if (kind && kind !== "identity") {
      const mid = pts[Math.floor(pts.length / 2)], prev = pts[Math.floor(pts.length / 2) - 1];
      const x = (mid[0] + prev[0]) / 2 + 6, y = (mid[1] + prev[1]) / 2;
      parent.append(sv("text", { class: "edge-label " + kind, x, y }, SKIP_TEXT[kind]));
    }
  }

  function drawVertex(v) {
    let cls = "vertex";
    if (v.group !== undefined) cls += " group";
    else if (v.terminal) cls += " terminal";
    else cls += " node";
    const g = sv("g", { class: cls, "data-key": v.key, transform: `translate(${(v.x - v.w / 2).toFixed(1)},${(v.y - v.h / 2).toFixed(1)})` });
    if (v.node !== undefined) g.setAttribute("data-name", G.nodes[v.node].name);
    if (v.group !== undefined) g.setAttribute("data-scope", G.scopes[v.group].name);
    let fill = "#eceff1", stroke = "#90a4ae";
    if (v.node !== undefined && !v.terminal) [fill, stroke] = family(G.nodes[v.node].op);
    if (v.group !== undefined) {
      const scope = G.scopes[v.group];
      if (scope.repeat && scope.count > 1) g.append(sv("rect", { class: "stack", x: 4, y: 4, width: v.w, height: v.h, rx: 7 }));
      g.append(sv("rect", { class: "box", width: v.w, height: v.h, rx: 7 }));
      g.append(sv("text", { class: "plus", x: v.w - 13, y: 16 }, "+"));
      v.skips.forEach((kind, k) => {   // the shortcuts inside, as an arc beside the box (as in the paper's figures)
        const out = 12 + 7 * k, top = 8 + 3 * k, bottom = v.h - 8 - 3 * k;
        g.append(sv("path", { class: "edge " + kind, d: `M${v.w + 4},${top} C${v.w + out},${top} ${v.w + out},${bottom} ${v.w + 6},${bottom}`, "marker-end": `url(#arrow-${kind})` }));
      });
    } else {
      g.append(sv("rect", { class: "box", width: v.w, height: v.h, rx: v.terminal ? v.h / 2 : 7, fill, stroke }));
    }
    v.lines.forEach((line, k) => {
      g.append(sv("text", { class: "t-" + line.kind, x: v.w / 2, y: 20 + 15 * k, "text-anchor": "middle" }, line.text));
    });
    return g;
  }

  function screenOf(anchor) {
    if (!view) return null;
    const v = view.byKey.get(anchor) || findScopeVertex(anchor);
    if (!v) return null;
    return [transform.x + v.x * transform.k, transform.y + (v.y - v.h / 2) * transform.k];
  }
  function findScopeVertex(anchor) {
    // a scope's frame (or the first box inside it) stands in for its collapsed box, and back
    if (anchor[0] !== "s") return null;
    const s = Number(anchor.slice(1));
    return view.vertices.find((v) => v.chain.includes(s) || v.group === s) || null;
  }

  // ---------------------------------------------------------------- pan and zoom
  function placeInitially() {
    const box = svg.getBoundingClientRect();
    const k = Math.min(1, (box.width - 40) / view.width);
    transform.k = Math.max(k, 0.15);
    transform.x = Math.max(20, (box.width - view.width * transform.k) / 2);
    transform.y = 10;
  }
  function fit() {
    const box = svg.getBoundingClientRect();
    transform.k = Math.min(1.5, (box.width - 40) / view.width, (box.height - 40) / view.height);
    transform.x = (box.width - view.width * transform.k) / 2;
    transform.y = (box.height - view.height * transform.k) / 2;
    applyTransform();
  }
  function zoomAt(factor, cx, cy) {
    const k = Math.min(4, Math.max(0.03, transform.k * factor));
    transform.x = cx - ((cx - transform.x) * k) / transform.k;
    transform.y = cy - ((cy - transform.y) * k) / transform.k;
    transform.k = k;
    applyTransform();
  }
  svg.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = svg.getBoundingClientRect();
    zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
  }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    drag = { x: event.clientX, y: event.clientY, tx: transform.x, ty: transform.y, moved: false };
  });
  window.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return;
    drag.moved = true;
    svg.classList.add("panning");
    transform.x = drag.tx + dx; transform.y = drag.ty + dy;
    applyTransform();
  });
  window.addEventListener("pointerup", () => {
    svg.classList.remove("panning");
    if (drag && drag.moved) { const stop = (e) => { e.stopPropagation(); }; svg.addEventListener("click", stop, { capture: true, once: true }); }
    drag = null;
  });
  $("zoom-in").addEventListener("click", () => { const b = svg.getBoundingClientRect(); zoomAt(1.25, b.width / 2, b.height / 2); });
  $("zoom-out").addEventListener("click", () => { const b = svg.getBoundingClientRect(); zoomAt(0.8, b.width / 2, b.height / 2); });
  $("fit").addEventListener("click", fit);

  // ---------------------------------------------------------------- expand and collapse
  function toggle(name, collapse) {
    if (collapse) collapsed.add(name); else collapsed.delete(name);
    const s = G.scopes.findIndex((scope) => scope.name === name);
    render("s" + s);
  }
  $("expand-all").addEventListener("click", () => { collapsed.clear(); render(); });
  $("collapse-all").addEventListener("click", () => {
    for (const scope of G.scopes) collapsed.add(scope.name);
    render(); fit();
  });

  // ---------------------------------------------------------------- hover and click
  const tooltip = $("tooltip");
  function vertexOf(target) {
    const g = target.closest && target.closest("g.vertex");
    return g && view ? view.byKey.get(g.getAttribute("data-key")) : null;
  }
  svg.addEventListener("mouseover", (event) => {
    const v = vertexOf(event.target);
    if (!v) return;
    showTooltip(v);
  });
  svg.addEventListener("mousemove", (event) => {
    if (tooltip.hidden) return;
    const x = Math.min(event.clientX + 14, window.innerWidth - tooltip.offsetWidth - 8);
    const y = Math.min(event.clientY + 16, window.innerHeight - tooltip.offsetHeight - 8);
    tooltip.style.left = x + "px"; tooltip.style.top = y + "px";
  });
  svg.addEventListener("mouseout", (event) => {
    const v = vertexOf(event.target);
    if (v && !(event.relatedTarget && vertexOf(event.relatedTarget) === v)) tooltip.hidden = true;
  });
  function showTooltip(v) {
    const parts = [];
    if (v.group !== undefined) {
      const scope = G.scopes[v.group], stats = scopeStats[v.group];
      parts.push(el("div", { class: "name" }, scope.name), el("div", { class: "op" }, scopeBlock(scope)));
      const rows = [];
      if (v.skips.length) rows.push(["shortcuts", v.skips.map((k) => SKIP_TEXT[k]).join(", ")]);
      if (scope.outputs) scope.outputs.forEach((o, k) => rows.push(["output " + k, dims(o >= 0 ? G.nodes[o].shape : null)]));
      else rows.push(["output", dims(scope.output >= 0 ? G.nodes[scope.output].shape : null)]);
      parts.push(facts([...rows,
        ["params", fmt(stats.params)], ["MACs", si(stats.macs) + (stats.macs >= 1000 ? " (" + fmt(stats.macs) + ")" : "")],
        ["nodes", fmt(stats.nodes)]]));
      parts.push(el("div", { class: "more" }, "click to expand"));
    } else if (v.node !== undefined) {
      const node = G.nodes[v.node];
      parts.push(el("div", { class: "name" }, node.name), el("div", { class: "op" }, node.label || node.op));
      const rows = [["output", dims(node.shape)]];
      if (node.op !== "input") rows.push(["params", fmt(node.params)], ["MACs", si(node.macs) + (node.macs >= 1000 ? " (" + fmt(node.macs) + ")" : "")]);
      parts.push(facts(rows));
    } else {
      parts.push(el("div", { class: "name" }, "output"), facts([["shape", v.lines[1].text]]));
    }
    tooltip.replaceChildren(...parts);
    tooltip.hidden = false;
  }
  svg.addEventListener("click", (event) => {
    const v = vertexOf(event.target);
    if (!v) return;
    if (v.group !== undefined) {
      tooltip.hidden = true;
      toggle(G.scopes[v.group].name, false);
    } else if (v.node !== undefined) {
      select(v.node);
    }
  });

  function markSelected() {
    for (const g of viewport.querySelectorAll("g.vertex.selected")) g.classList.remove("selected");
    const i = G.nodes.findIndex((n) => n.name === selected);
    if (i < 0) return;
    const g = viewport.querySelector(`g.vertex[data-key="n${i}"]`);
    if (g) g.classList.add("selected");
  }
  function sourceExcerpt(src) {
    const file = G.files[src[0]];
    const lines = file.text.split(/\r\n|\r|\n/);
    const pre = el("pre", { class: "source" });
    const first = Math.max(1, src[1] - 2), last = Math.min(lines.length, src[1] + 2);
    const width = String(last).length;
    for (let n = first; n <= last; n++) {
      const row = el("span", n === src[1] ? { class: "here" } : {});
      row.append(el("span", { class: "gutter" }, String(n).padStart(width) + "  "), document.createTextNode(lines[n - 1] || ""));
      pre.append(row);
    }
    return pre;
  }
  const located = (src) => G.files[src[0]].path + ":" + src[1] + ":" + src[2];
  function select(i) {
    const node = G.nodes[i];
    selected = node.name;
    markSelected();
    const box = $("details");
    const parts = [el("h2", {}, node.name)];
    const rows = [["op", node.label && node.label.startsWith(node.op) ? node.label : node.op + (node.label ? " \u2014 " + node.label : "")],
      ["output", dims(node.shape)]];
    if (node.op !== "input") rows.push(["params", fmt(node.params)], ["MACs", fmt(node.macs)]);
    if (node.inputs.length) rows.push(["inputs", node.inputs.map((j) => G.nodes[j].name).join(", ")]);
    const scope = node.scope >= 0 ? G.scopes[node.scope] : null;
    if (scope) rows.push(["in block", scope.name + " (" + scope.block + ")"]);
    parts.push(facts(rows));
    if (node.src) {
      parts.push(el("h3", {}, "Source"), el("div", { class: "location", "data-location": located(node.src) }, located(node.src)));
      parts.push(sourceExcerpt(node.src));
    }
    if (node.via && node.via.length) {
      parts.push(el("h3", {}, "Instantiated"));
      const list = el("ul", { class: "via" });
      for (const [message, src] of node.via) {
        const item = el("li", {}, message);
        if (src) item.append(document.createTextNode(" "), el("span", { class: "location" }, located(src)));
        list.append(item);
      }
      parts.push(list);
    }
    box.replaceChildren(...parts);
  }

  // ---------------------------------------------------------------- search
  const search = $("search"), results = $("results");
  let active = 0;
  function matches(term) {
    const q = term.trim().toLowerCase();
    if (!q) return [];
    const found = [];
    G.nodes.forEach((node, i) => { if (node.name.toLowerCase().includes(q)) found.push(i); });
    return found;
  }
  function highlightMatches() {
    const found = new Set(matches(searchTerm));
    for (const g of viewport.querySelectorAll("g.vertex")) {
      const v = view.byKey.get(g.getAttribute("data-key"));
      let hit = v && v.node !== undefined && found.has(v.node);
      if (v && v.group !== undefined && found.size) hit = [...found].some((i) => chains[i].includes(v.group));
      g.classList.toggle("match", Boolean(hit));
    }
  }
  function showResults() {
    searchTerm = search.value;
    const found = matches(searchTerm);
    results.replaceChildren();
    active = 0;
    if (!searchTerm.trim()) { results.hidden = true; highlightMatches(); return; }
    for (const i of found.slice(0, 40)) {
      const item = el("li", { "data-index": String(i) });
      item.append(el("span", {}, G.nodes[i].name), el("span", { class: "op" }, G.nodes[i].label || G.nodes[i].op));
      item.addEventListener("mousedown", (event) => { event.preventDefault(); reveal(i); });
      results.append(item);
    }
    if (!found.length) results.append(el("li", { class: "more" }, "no node matches"));
    else if (found.length > 40) results.append(el("li", { class: "more" }, `and ${found.length - 40} more`));
    if (results.firstChild) results.firstChild.classList.toggle("active", found.length > 0);
    results.hidden = false;
    highlightMatches();
  }
  search.addEventListener("input", showResults);
  search.addEventListener("focus", () => { if (search.value.trim()) results.hidden = false; });
  search.addEventListener("blur", () => { results.hidden = true; });
  search.addEventListener("keydown", (event) => {
    const items = [...results.querySelectorAll("li[data-index]")];
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (!items.length) return;
      active = (active + (event.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      items.forEach((item, k) => item.classList.toggle("active", k === active));
    } else if (event.key === "Enter" && items.length) {
      reveal(Number(items[active].getAttribute("data-index")));
    } else if (event.key === "Escape") {
      search.value = ""; showResults(); search.blur();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && document.activeElement !== search && document.activeElement !== $("source")) {
      event.preventDefault(); search.focus();
    }
  });
  function reveal(i) {
    for (const s of chains[i]) collapsed.delete(G.scopes[s].name);
    results.hidden = true;
    render();
    select(i);
    const v = view.byKey.get("n" + i);
    const box = svg.getBoundingClientRect();
    transform.k = Math.max(transform.k, 0.9);
    transform.x = box.width / 2 - v.x * transform.k;
    transform.y = box.height / 2 - v.y * transform.k;
    applyTransform();
    const g = viewport.querySelector(`g.vertex[data-key="n${i}"]`);
    if (g) { g.classList.add("flash"); setTimeout(() => g.classList.remove("flash"), 1200); }
  }

  // ---------------------------------------------------------------- summary and legend
  function showSummary() {
    document.title = G.name + " \u2014 resgraph";
    $("title").textContent = G.name;
    const inputs = G.nodes.filter((n) => n.op === "input");
    const stats = $("stats");
    stats.replaceChildren();
    for (const [value, what] of [[fmt(G.nodes.length), " nodes \u00b7 "], [si(G.params), " params \u00b7 "], [si(G.macs), " MACs"]]) {
      stats.append(el("b", {}, value), document.createTextNode(what));
    }
    const parts = [el("h2", {}, G.name)];
    if (G.doc) parts.push(el("p", { class: "doc" }, G.doc));
    parts.push(facts([
      ["inputs", inputs.map((n) => n.name + " " + dims(n.shape)).join(", ")],
      ["outputs", G.outputs.map((i) => G.nodes[i].name + " " + dims(G.nodes[i].shape)).join(", ")],
      ["nodes", fmt(G.nodes.length)], ["params", fmt(G.params) + " (" + si(G.params) + ")"],
      ["MACs", fmt(G.macs) + " (" + si(G.macs) + ") per sample"],
      ["blocks", fmt(G.scopes.filter((s) => !s.repeat).length) + " instances"],
    ]));
    const top = G.scopes.map((scope, s) => [scope, s]).filter(([scope]) => scope.level === 0);
    if (top.length) {
      // each top-level block call's share of the parameters and MACs; a click shows it
      parts.push(el("h3", {}, "Blocks"));
      const table = el("table", { class: "blocks" });
      const head = el("tr");
      for (const title of ["block", "params", "MACs"]) head.append(el("th", {}, title));
      table.append(head);
      for (const [scope, s] of top) {
        const stats = scopeStats[s];
        const row = el("tr", { "data-scope": scope.name, title: scope.name + ": " + scopeBlock(scope) });
        const name = el("td");
        name.append(el("span", { class: "mono" }, scope.name), el("span", { class: "kind" }, " " + scopeBlock(scope)));
        row.append(name);
        for (const [value, total] of [[stats.params, G.params], [stats.macs, G.macs]]) {
          const cell = el("td", { class: "share" }, si(value));
          const bar = el("span", { class: "bar" });
          bar.style.width = (total ? Math.round((100 * value) / total) : 0) + "%";
          cell.append(bar);
          row.append(cell);
        }
        row.addEventListener("click", () => revealScope(s));
        table.append(row);
      }
      parts.push(table);
    }
    $("summary").replaceChildren(...parts);
  }
  function revealScope(s) {
    // open the block's frame (its ancestors, and itself unless it is a collapsed box) and centre it
    for (let p = G.scopes[s].parent; p >= 0; p = G.scopes[p].parent) collapsed.delete(G.scopes[p].name);
    render();
    const v = view.byKey.get("s" + s) || findScopeVertex("s" + s);
    if (!v) return;
    const box = svg.getBoundingClientRect();
    transform.x = box.width / 2 - v.x * transform.k;
    transform.y = box.height / 3 - v.y * transform.k;
    applyTransform();
  }
  function showLegend() {
    const legend = el("div", { class: "legend" });
    for (const [kind, text] of [["", "data flow"], ["identity", "identity shortcut"], ["project", "projection shortcut (1\u00d71 conv)"], ["pad", "zero-padding shortcut"]]) {
      const icon = sv("svg", { width: "44", height: "12" });
      icon.append(sv("path", { class: "edge" + (kind ? " " + kind : ""), d: "M2,6 L42,6" }));
      legend.append(icon, el("span", {}, text));
    }
    const swatches = el("div", { class: "swatches" });
    for (const [name, op] of [["conv / linear", "conv2d"], ["norm", "batchnorm2d"], ["activation", "relu"], ["merge", "add"], ["pool", "maxpool2d"]]) {
      const [fill, stroke] = family(op);
      const chip = el("span", {}, name);
      chip.style.background = fill; chip.style.borderColor = stroke;
      swatches.append(chip);
    }
    $("legend").replaceChildren(el("h3", {}, "Legend"), legend, swatches);
  }

  // ---------------------------------------------------------------- diagnostics (the playground)
  function showDiagnostics(list, ok) {
    const box = $("diagnostics");
    const shown = list.filter((d) => !ok || d.severity !== "error");
    if (!shown.length) { box.hidden = true; box.replaceChildren(); return; }
    const errors = shown.filter((d) => d.severity === "error").length;
    box.classList.toggle("warnings-only", errors === 0);
    const title = errors ? `${errors} error${errors === 1 ? "" : "s"}` + (G ? " \u2014 showing the last valid version" : "")
      : `${shown.length} warning${shown.length === 1 ? "" : "s"}`;
    const parts = [el("h2", {}, title)];
    for (const d of shown) {
      const item = el("div", { class: "diagnostic " + d.severity, "data-code": d.code });
      const head = el("div", { class: "headline" });
      if (d.where) head.append(el("span", { class: "where" }, d.where + ": "));
      head.append(el("span", { class: "code" }, `${d.severity}[${d.code}]`), document.createTextNode(": " + d.message));
      item.append(head);
      if (d.excerpt) item.append(el("pre", {}, d.excerpt));
      for (const [message, where] of d.notes || []) {
        const note = el("div", { class: "note" }, "note: " + message);
        if (where) note.append(document.createTextNode(" "), el("span", { class: "where" }, where));
        item.append(note);
      }
      if (d.help) item.append(el("div", { class: "help" }, "help: " + d.help));
      if (CONFIG.edit && d.file === CONFIG.spec && d.line) {
        item.classList.add("jump");
        item.title = "show in the editor";
        item.addEventListener("click", () => jumpTo(d.line, d.col));
      }
      parts.push(item);
    }
    box.replaceChildren(...parts);
    box.hidden = false;
  }
  function markFailing(list) {
    // the nodes an error names (`layer2.add`), in red on the last valid drawing
    const named = new Set();
    for (const d of list) if (d.severity === "error") for (const m of d.message.matchAll(/`([^`]+)`/g)) named.add(m[1]);
    let first = null;
    for (const g of viewport.querySelectorAll("g.vertex.node")) {
      const failing = named.has(g.getAttribute("data-name"));
      g.classList.toggle("failing", failing);
      if (failing && !first) first = g;
    }
    return first;
  }
  function bringIntoView(g) {
    // below the diagnostics, which cover the top of the drawing
    const v = view.byKey.get(g.getAttribute("data-key"));
    const box = svg.getBoundingClientRect(), at = g.getBoundingClientRect();
    if (at.top > box.top + box.height * 0.45 && at.bottom < box.bottom && at.left > box.left && at.right < box.right) return;
    transform.x = box.width / 2 - v.x * transform.k;
    transform.y = box.height * 0.7 - v.y * transform.k;
    applyTransform();
  }

  function applyState(state, first) {
    STATE = state;
    if (state.graph) {
      prepare(state.graph, first || !G);
      showSummary();
      render();
    }
    $("canvas").classList.toggle("stale", state.ok === false && Boolean(G));
    showDiagnostics(state.diagnostics || [], state.ok !== false);
    if (G) {
      const failing = markFailing(state.ok === false ? state.diagnostics || [] : []);
      if (failing && !first) bringIntoView(failing);
    }
    if (CONFIG.mode === "serve") {
      const status = $("status");
      status.hidden = false;
      status.className = state.ok ? "ok" : "bad";
      const when = state.checked ? new Date(state.checked * 1000).toLocaleTimeString() : "";
      status.textContent = (state.ok ? "valid" : "invalid") + " \u00b7 watching " + (state.files || []).length +
        " file" + ((state.files || []).length === 1 ? "" : "s") + (when ? " \u00b7 checked " + when : "");
      status.setAttribute("data-version", String(state.version));
      if (CONFIG.edit && typeof state.text === "string" && !dirty) $("source").value = state.text;
    }
  }

  // ---------------------------------------------------------------- the playground: updates and the editor
  let dirty = false;
  async function follow() {
    let version = STATE.version;
    for (;;) {
      try {
        const response = await fetch("/api/state?after=" + encodeURIComponent(version), { cache: "no-store" });
        if (!response.ok) throw new Error("status " + response.status);
        const state = await response.json();
        if (state.version !== version) { version = state.version; applyState(state, false); }
      } catch (error) {
        const status = $("status");
        status.className = "off"; status.textContent = "disconnected from resgraph serve \u2014 retrying";
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }
  function jumpTo(line, col) {
    const area = $("source");
    const lines = area.value.split("\n");
    let offset = 0;
    for (let n = 0; n < line - 1 && n < lines.length; n++) offset += lines[n].length + 1;
    offset += Math.max(0, col - 1);
    area.focus();
    area.setSelectionRange(offset, offset);
    area.scrollTop = Math.max(0, (line - 5) * 20);
  }
  async function save() {
    const status = $("save-status");
    status.textContent = "saving\u2026";
    try {
      const response = await fetch("/api/save", {
        method: "POST", headers: { "Content-Type": "application/json" }, cache: "no-store",
        body: JSON.stringify({ token: CONFIG.token, text: $("source").value }),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || "status " + response.status);
      dirty = false;
      status.textContent = "saved " + new Date().toLocaleTimeString();
    } catch (error) {
      status.textContent = "not saved: " + error.message;
    }
  }
  function setUpEditor() {
    const area = $("source");
    $("editor").hidden = false;
    $("editor-file").textContent = CONFIG.spec;
    let timer = null;
    area.addEventListener("input", () => {
      dirty = true;
      $("save-status").textContent = "unsaved changes";
      if ($("autosave").checked) { clearTimeout(timer); timer = setTimeout(save, 500); }
    });
    area.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s") { event.preventDefault(); save(); }
      else if (event.key === "Tab" && !event.shiftKey) {
        event.preventDefault();
        const start = area.selectionStart;
        area.setRangeText("  ", start, area.selectionEnd, "end");
        area.dispatchEvent(new Event("input"));
      }
    });
    $("save").addEventListener("click", save);
  }

  // ---------------------------------------------------------------- start
  showLegend();
  if (CONFIG.edit) setUpEditor();
  applyState(STATE, true);
  if (!G) { $("title").textContent = CONFIG.spec || "resgraph"; }
  if (CONFIG.mode === "serve") follow();
  window.resgraphViewer = { ready: true };
})();
