// Draws timeline.html from its two JSON blocks: the model (lanes, spans, marks,
// violation, linearizability counterexample) and the events they refer to.
// Hand-written, no libraries: the page must open from file:// with no network.
'use strict';
(function () {
  const model = JSON.parse(document.getElementById('timeline-model').textContent);
  const events = JSON.parse(document.getElementById('timeline-events').textContent);
  const bySeq = new Map(events.map((e) => [e.seq, e]));
  const violation = model.violation;
  const culprits = new Set();
  if (violation) {
    violation.culprits.forEach((s) => culprits.add(s));
    if (violation.seq !== null) culprits.add(violation.seq);
  }
  const LABEL_PX = 170;
  const fitPx = () => Math.max(400, window.innerWidth - LABEL_PX - 40) / model.end_ms;
  let pxPerMs = fitPx();

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function row(parent, label, width, cls) {
    const r = el('div', 'row' + (cls ? ' ' + cls : ''));
    const l = el('div', 'label', label);
    l.title = label;
    const t = el('div', 'track');
    t.style.width = width + 'px';
    r.append(l, t);
    parent.append(r);
    return t;
  }

  // `seqs`: the events it stands for (a click shows them); those the violation
  // names are outlined, unless `plain`.
  function item(track, cls, left, width, label, seqs, plain) {
    const d = el('div', cls);
    d.style.left = left + 'px';
    if (width !== null) d.style.width = Math.max(2, width) + 'px';
    d.title = label;
    if (seqs) {
      d.dataset.seqs = seqs.join(',');
      if (!plain && seqs.some((s) => culprits.has(s))) d.classList.add('culprit');
    }
    track.append(d);
    return d;
  }

  function fmtMs(ms) {
    return ms >= 1000 ? (ms / 1000).toFixed(ms % 1000 ? 2 : 0) + ' s' : ms + ' ms';
  }

  function tickStep() {
    for (const base of [1, 10, 100, 1000, 10000, 100000, 1000000]) {
      for (const m of [1, 2, 5]) {
        if (base * m * pxPerMs >= 90) return base * m;
      }
    }
    return 10000000;
  }

  function drawTimeline() {
    const root = document.getElementById('timeline');
    const scroll = root.scrollLeft;
    root.textContent = '';
    const width = Math.ceil(model.end_ms * pxPerMs) + 20;
    const axis = row(root, 'simulated time', width, 'axis');
    const step = tickStep();
    for (let ms = 0; ms <= model.end_ms; ms += step) {
      item(axis, 'tick', ms * pxPerMs, null, '', null).textContent = fmtMs(ms);
    }
    const lanes = new Map();
    for (const lane of model.lanes) lanes.set(lane.id, row(root, lane.label, width));
    for (const s of model.spans) {
      const track = lanes.get(s.lane);
      if (!track) continue;
      const cls = 'span ' + s.class + (s.open ? ' open' : '');
      const d = item(track, cls, s.start_ms * pxPerMs, (s.end_ms - s.start_ms) * pxPerMs,
        s.label + ' [' + fmtMs(s.start_ms) + ' .. ' + fmtMs(s.end_ms) + (s.open ? ', still going' : '') + ']', s.seqs);
      if ((s.end_ms - s.start_ms) * pxPerMs > 40) d.textContent = s.label;
    }
    for (const m of model.marks) {
      const track = lanes.get(m.lane);
      if (track) item(track, 'mark ' + m.class, m.ms * pxPerMs - 1, null, fmtMs(m.ms) + ': ' + m.label, [m.seq]);
    }
    if (violation && violation.ms !== null) {
      for (const track of lanes.values()) item(track, 'vline', violation.ms * pxPerMs, null, '', null);
    }
    root.scrollLeft = scroll;
    document.body.dataset.lanes = String(lanes.size);
  }

  function select(seqs, title) {
    document.querySelectorAll('.selected').forEach((e) => e.classList.remove('selected'));
    const out = document.getElementById('selected');
    out.textContent = '';
    if (title) out.append(el('p', null, title));
    for (const seq of seqs) {
      const e = bySeq.get(seq);
      const who = !e ? '' : e.node === 0 ? 'harness' : 'node ' + e.node;
      const tag = culprits.has(seq) ? (violation && seq === violation.seq ? ' (broke the invariant)' : ' (named by the violation)') : '';
      out.append(el('h3', null, '#' + seq + (e ? ' at ' + fmtMs(e.time_ms) + ', ' + who : ' (not in the page)') + tag));
      if (e) out.append(el('pre', null, JSON.stringify(e, null, 2)));
    }
  }

  function onClick(ev) {
    const target = ev.target.closest('[data-seqs]');
    if (!target) return;
    select(target.dataset.seqs.split(',').map(Number), target.title);
    target.classList.add('selected');
  }

  function controls() {
    const nav = document.getElementById('controls');
    const button = (text, fn) => {
      const b = el('button', null, text);
      b.addEventListener('click', fn);
      nav.append(b);
    };
    const zoom = (f) => () => { pxPerMs *= f; drawTimeline(); };
    button('zoom in', zoom(2));
    button('zoom out', zoom(0.5));
    button('fit', () => { pxPerMs = fitPx(); drawTimeline(); });
    if (violation && violation.ms !== null) {
      button('go to the violation', () => {
        const root = document.getElementById('timeline');
        root.scrollLeft = violation.ms * pxPerMs - root.clientWidth / 2;
        select([violation.seq].concat(violation.culprits), violation.invariant);
      });
    }
    const legend = el('span', 'legend');
    const keys = [['role-leader', 'leader'], ['role-candidate', 'candidate'], ['role-precandidate', 'pre-candidate'],
      ['role-follower', 'follower'], ['mode', 'LogicNode mode'], ['op-ok', 'op ok'], ['op-fail', 'op failed'],
      ['op-unknown', 'op unknown'], ['fault-down', 'down'], ['fault-paused', 'paused'], ['fault-net', 'partition'],
      ['fault-link', 'link/latency'], ['fault-disk', 'disk'], ['fault-clock', 'clock drift']];
    if (violation) keys.push(['culprit', 'named by the violation']);
    for (const [cls, text] of keys) legend.append(el('span', cls, text));
    nav.append(' ', legend, ' ' + model.total_events + ' events in the trace; ' + events.length +
      ' drawn here (all of them: trace.jsonl beside this file)');
  }

  // The shrunk sub-history of a linearizability failure, drawn as Porcupine draws
  // one: a row per client, each operation a box from call to return (positions in
  // the trace, by rank), and the longest partial linearization as numbered points.
  function drawLincheck(c) {
    const root = document.getElementById('lincheck');
    root.append(el('h2', null, 'Linearizability: ' + c.workload + ' key ' + JSON.stringify(c.key) + ', ' +
      c.ops.length + ' of its ' + c.total_ops + ' operations (shrunk)'));
    const placed = new Set(c.linearized);
    root.append(el('p', null, 'Boxes: operations from invocation to completion (dashed: outcome unknown). ' +
      'Numbered green lines: the longest order the model accepts that respects real time (' +
      c.linearized.length + ' of ' + c.ops.length + ' operations). Red boxes: operations no such order can take in, ' +
      'so the history is not linearizable. Across: the order of the invocations and completions in the trace ' +
      '(not to scale; hover for times).'));
    const times = new Set();
    for (const op of c.ops) {
      times.add(op.call_seq);
      if (op.ret_seq !== null) times.add(op.ret_seq);
    }
    const ranks = [...times].sort((a, b) => a - b);
    const COL = 190;
    const x = (seq) => 10 + ranks.indexOf(seq) * COL;
    const end = 10 + ranks.length * COL;
    const box = el('div', 'lc');
    root.append(box);
    const clients = [...new Set(c.ops.map((op) => op.client))].sort((a, b) => a - b);
    const tracks = new Map(clients.map((cl) => [cl, row(box, 'client ' + cl, end + 20)]));
    const lefts = [];
    c.ops.forEach((op, i) => {
      const right = op.ret_seq === null ? end : x(op.ret_seq);
      const cls = 'op' + (op.ret_seq === null ? ' pending' : '') + (!placed.has(i) && op.ret_seq !== null ? ' bad' : '');
      const text = op.input + (op.output === null ? '' : ' -> ' + op.output);
      const title = text + ' (' + fmtMs(op.call_ms) + ' .. ' + (op.ret_ms === null ? 'never' : fmtMs(op.ret_ms)) +
        ', events #' + op.call_seq + '..' + (op.ret_seq === null ? 'never' : '#' + op.ret_seq) + ')' +
        (op.state_after === null ? '' : '; state after: ' + op.state_after);
      const seqs = op.ret_seq === null ? [op.call_seq] : [op.call_seq, op.ret_seq];
      item(tracks.get(op.client), cls, x(op.call_seq), right - x(op.call_seq) - 4, title, seqs, true).textContent = text;
      lefts[i] = [x(op.call_seq), right];
    });
    let prev = 0;
    c.linearized.forEach((i, k) => {
      const [l, r] = lefts[i];
      const at = Math.min(Math.max(l + 6, prev + 10), r - 8);
      prev = at;
      const op = c.ops[i];
      const p = item(tracks.get(op.client), 'point', at, null, (k + 1) + '. ' + op.input + '; state after: ' + op.state_after, null);
      p.append(el('span', null, String(k + 1)));
    });
  }

  document.body.addEventListener('click', onClick);
  controls();
  drawTimeline();
  if (model.lincheck) drawLincheck(model.lincheck);
  if (violation) select(violation.seq === null ? violation.culprits : [violation.seq].concat(violation.culprits), violation.invariant + ': the event that broke it and the events it names');
  document.body.dataset.rendered = 'yes';
})();
