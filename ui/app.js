// catgate dashboard: a single page over the /1 admin API. No framework, no build step.
// Every figure on the page is a value the API returned, shown as returned: money stays the
// API's decimal string (floats only size the chart's bars). The token lives in
// sessionStorage and travels only in the Authorization header.
'use strict';

const TOKEN_KEY = 'catgate.token';
// The API sits beside /ui/, also when catgate is served under a path prefix.
const API = location.pathname.replace(/ui\/[^/]*$/, '') + '1';
const COLORS = ['#4f46e5', '#0891b2', '#d97706', '#db2777', '#059669', '#7c3aed', '#dc2626',
  '#65a30d', '#0284c7', '#9333ea'];
const SVG_NS = 'http://www.w3.org/2000/svg';

const state = { token: null, me: null, window: null, redraw: null };

// ---------------------------------------------------------------------------------------------
// DOM helpers: text always goes in as text, never as markup.

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
}

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function sentence(text) {
  const t = String(text).trim();
  return t ? t[0].toUpperCase() + t.slice(1) : t;
}

async function request(method, path, body) {
  const headers = { Authorization: 'Bearer ' + state.token };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(API + path, init);
  } catch (e) {
    throw new ApiError(0, 'catgate did not answer. Is it running?');
  }
  if (resp.status === 401) throw new ApiError(401, 'That token was not accepted');
  if (!resp.ok) {
    let message = '';
    try {
      message = (await resp.json()).error || '';
    } catch (e) { /* not JSON: say the status */ }
    throw new ApiError(resp.status, message ? sentence(message) : `catgate answered ${resp.status}`);
  }
  return resp;
}

const api = {
  get: async (path) => (await request('GET', path)).json(),
  send: async (method, path, body) => (await request(method, path, body)).json(),
  text: async (path) => (await request('GET', path)).text(),
};

// An error from an action: a dead token signs out, anything else is said in plain words.
function fail(err) {
  if (err instanceof ApiError && err.status === 401) {
    signOut(err.message);
    return;
  }
  notify(err.message || String(err), true);
}

function notify(message, isError) {
  const box = $('notice');
  box.textContent = message;
  box.className = isError ? 'notice notice-error' : 'notice';
  box.setAttribute('role', isError ? 'alert' : 'status');
  box.hidden = false;
}

function clearNotice() {
  $('notice').hidden = true;
}

// ---------------------------------------------------------------------------------------------
// Numbers and money, without floats

/** 1234567 → "1,234,567" (integers from the API; no locale, so tests can read it back). */
function count(n) {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

function money(s) {
  return '$' + s;
}

/** Exact a − b of two decimal strings, via BigInt; null if either is not a decimal. */
function decimalSub(a, b) {
  const parse = (s) => /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(s).trim());
  const pa = parse(a);
  const pb = parse(b);
  if (!pa || !pb) return null;
  const scale = Math.max((pa[3] || '').length, (pb[3] || '').length);
  const big = (p) => BigInt(p[1] + p[2] + (p[3] || '').padEnd(scale, '0'));
  const diff = big(pa) - big(pb);
  const negative = diff < 0n;
  const digits = (negative ? -diff : diff).toString().padStart(scale + 1, '0');
  const whole = digits.slice(0, digits.length - scale);
  const frac = scale ? '.' + digits.slice(digits.length - scale) : '';
  return (negative ? '-' : '') + whole + frac;
}

/** Float value of a decimal string: for bar heights only, never for a displayed figure. */
function magnitude(s) {
  const v = Number.parseFloat(s);
  return Number.isFinite(v) ? v : 0;
}

function when(rfc3339) {
  if (!rfc3339) return '';
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return String(rfc3339);
  return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

// ---------------------------------------------------------------------------------------------
// Report windows: [from, to) as UTC days

function day(date) {
  return date.toISOString().slice(0, 10);
}

function addDays(text, n) {
  const d = new Date(text + 'T00:00:00Z');
  d.setUTCDate(d.getUTCDate() + n);
  return day(d);
}

const PRESETS = {
  'Last 30 days': () => {
    const tomorrow = addDays(day(new Date()), 1);
    return { from: addDays(tomorrow, -30), to: tomorrow };
  },
  'This month': () => {
    const now = new Date();
    const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    const next = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
    return { from: day(first), to: day(next) };
  },
  'Last month': () => {
    const now = new Date();
    const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
    const next = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    return { from: day(first), to: day(next) };
  },
};

function windowForm(onChange) {
  const w = state.window;
  const from = el('input', { type: 'date', id: 'win-from', name: 'from', value: w.from, required: true });
  const to = el('input', { type: 'date', id: 'win-to', name: 'to', value: w.to, required: true });
  const form = el('form', { class: 'toolbar', 'aria-label': 'Report window' },
    el('div', { class: 'field' }, el('label', { for: 'win-from' }, 'From'), from),
    el('div', { class: 'field' }, el('label', { for: 'win-to' }, 'To (not included)'), to),
    el('button', { type: 'submit', class: 'primary' }, 'Show'),
    el('div', { class: 'presets', role: 'group', 'aria-label': 'Presets' },
      Object.entries(PRESETS).map(([label, make]) => el('button', {
        type: 'button',
        class: 'ghost',
        onclick: () => {
          state.window = make();
          onChange();
        },
      }, label))));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!from.value || !to.value) return notify('Give both dates.', true);
    state.window = { from: from.value, to: to.value };
    onChange();
  });
  return form;
}

// ---------------------------------------------------------------------------------------------
// The spend chart: cost per day, stacked by model, as plain SVG

function spendChart(host, byDayModel, byDay, span) {
  const days = [];
  for (let d = span.from; d < span.to && days.length < 1000; d = addDays(d, 1)) days.push(d);
  const totals = new Map(byDay.map((r) => [r.day, r]));
  const models = [...new Set(byDayModel.map((r) => r.model))];
  const modelCost = new Map(models.map((m) => [m, 0]));
  for (const r of byDayModel) modelCost.set(r.model, modelCost.get(r.model) + magnitude(r.cost));
  models.sort((a, b) => modelCost.get(b) - modelCost.get(a) || a.localeCompare(b));
  const color = new Map(models.map((m, i) => [m, COLORS[i % COLORS.length]]));
  const cells = new Map();
  for (const r of byDayModel) cells.set(r.day + '\u0000' + r.model, r);

  const draw = () => {
    host.replaceChildren();
    if (!byDayModel.length) {
      host.append(el('p', { class: 'empty' }, 'No usage in this window.'));
      return;
    }
    const width = Math.max(280, host.clientWidth || 600);
    const height = 240;
    const pad = { left: 0, right: 8, top: 12, bottom: 28 };
    const plotH = height - pad.top - pad.bottom;
    const step = niceCeiling(Math.max(...days.map((d) => magnitude(totals.get(d)?.cost || '0'))) / 4);
    const top = step * 4;
    const labels = [0, 1, 2, 3, 4].map((i) => axisMoney(step * i));
    pad.left = 14 + 7 * Math.max(...labels.map((l) => l.length));
    const plotW = width - pad.left - pad.right;
    const y = (v) => pad.top + plotH - (v / top) * plotH;
    const slot = plotW / days.length;
    const barW = Math.max(1, Math.min(36, slot * 0.7));
    const chart = svg('svg', {
      width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img',
      'aria-label': `Cost per day from ${span.from} to ${span.to}, by model`,
    });
    for (let i = 0; i <= 4; i++) {
      const v = step * i;
      chart.append(
        svg('line', { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: i ? 'grid' : 'axis' }),
        svg('text', { x: pad.left - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'tick' }, labels[i]));
    }
    const every = Math.ceil(days.length / Math.max(1, Math.floor(plotW / 64)));
    days.forEach((d, i) => {
      const x = pad.left + slot * i + (slot - barW) / 2;
      let base = 0;
      const total = totals.get(d);
      const group = svg('g', { class: 'bar' });
      for (const m of models) {
        const r = cells.get(d + '\u0000' + m);
        if (!r) continue;
        const v = magnitude(r.cost);
        const h = y(base) - y(base + v);
        base += v;
        group.append(svg('rect', { x, y: y(base), width: barW, height: Math.max(h, 0), fill: color.get(m) },
          svg('title', {}, `${d} · ${m}: ${money(r.cost)} · ${count(r.requests)} requests`)));
      }
      if (total) group.append(svg('title', {}, `${d}: ${money(total.cost)}`));
      chart.append(group);
      if (i % every === 0) {
        chart.append(svg('text', { x: x + barW / 2, y: height - 8, 'text-anchor': 'middle', class: 'tick' },
          d.slice(5)));
      }
    });
    host.append(chart, el('ul', { class: 'legend', 'aria-label': 'Models' }, models.map((m) =>
      el('li', {}, swatch(color.get(m)), m))));
  };
  draw();
  state.redraw = draw;
}

function swatch(fill) {
  return svg('svg', { width: 12, height: 12, 'aria-hidden': 'true', class: 'swatch' },
    svg('rect', { width: 12, height: 12, rx: 3, fill }));
}

/** The smallest 1/2/2.5/5 × 10^k at or above v (axis steps; never a displayed figure). */
function niceCeiling(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** An axis label: at least 2 decimals, at most 6, no trailing zeros beyond 2. */
function axisMoney(v) {
  return '$' + v.toFixed(6).replace(/0{1,4}$/, '');
}

// ---------------------------------------------------------------------------------------------
// Report tables

const TOKEN_COLUMNS = [
  ['Requests', 'requests'],
  ['Input tokens', 'promptTokens'],
  ['Cached', 'cachedTokens'],
  ['Output tokens', 'completionTokens'],
  ['Reasoning', 'reasoningTokens'],
  ['Total tokens', 'totalTokens'],
];

function notes(r) {
  const parts = [];
  if (r.unpricedRequests) parts.push(`${count(r.unpricedRequests)} unpriced`);
  if (r.estimatedRequests) parts.push(`${count(r.estimatedRequests)} estimated`);
  if (r.failedRequests) parts.push(`${count(r.failedRequests)} failed`);
  return parts.join(', ');
}

function reportTable(id, caption, first, rows) {
  const head = el('tr', {}, el('th', { scope: 'col' }, first.label),
    TOKEN_COLUMNS.map(([label]) => el('th', { scope: 'col', class: 'num' }, label)),
    el('th', { scope: 'col', class: 'num' }, 'Cost'), el('th', { scope: 'col' }, 'Notes'));
  const body = rows.length
    ? rows.map((r) => el('tr', {}, el('th', { scope: 'row' }, first.value(r)),
      TOKEN_COLUMNS.map(([, field]) => el('td', { class: 'num' }, count(r[field]))),
      el('td', { class: 'num money' }, money(r.cost)), el('td', { class: 'muted' }, notes(r))))
    : [el('tr', {}, el('td', { colspan: TOKEN_COLUMNS.length + 3, class: 'empty' }, 'No usage in this window.'))];
  return el('div', { class: 'card' }, el('h2', {}, caption),
    el('div', { class: 'table-wrap' }, el('table', { id }, el('thead', {}, head), el('tbody', {}, body))));
}

async function downloadCsv(path, span) {
  const qs = new URLSearchParams({ from: span.from, to: span.to, group_by: 'user,model', format: 'csv' });
  const text = await api.text(`${path}?${qs}`);
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
  const link = el('a', { href: url, download: `catgate-usage-${span.from}-${span.to}.csv`, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  notify(`Saved catgate-usage-${span.from}-${span.to}.csv`);
}

/** Chart, tables and CSV for one report path (everyone's or the caller's own). */
async function usageReport(host, path, tables) {
  const span = state.window;
  const q = (groupBy) => `${path}?${new URLSearchParams({ from: span.from, to: span.to, group_by: groupBy })}`;
  const chartHost = el('div', { class: 'chart-host' });
  const csv = el('button', { type: 'button', id: 'csv', class: 'secondary' }, 'Download CSV');
  csv.addEventListener('click', () => downloadCsv(path, span).catch(fail));
  host.replaceChildren(el('div', { class: 'card' },
    el('div', { class: 'card-head' }, el('h2', {}, 'Cost per day'), csv), chartHost));
  const [byDayModel, byDay, ...rows] = await Promise.all(
    ['day,model', 'day', ...tables.map((t) => t.groupBy)].map((g) => api.get(q(g))));
  spendChart(chartHost, byDayModel, byDay, span);
  tables.forEach((t, i) => host.append(reportTable(t.id, t.caption, t.first, rows[i])));
}

const BY_USER = { id: 'by-user', caption: 'By user', groupBy: 'user', first: { label: 'User', value: (r) => r.userName } };
const BY_MODEL = { id: 'by-model', caption: 'By model', groupBy: 'model', first: { label: 'Model', value: (r) => r.model } };

// ---------------------------------------------------------------------------------------------
// Views

function page(title, ...children) {
  return el('section', { class: 'page' }, el('h1', { tabindex: '-1' }, title), children);
}

async function spendView(view) {
  const report = el('div', { class: 'report' });
  const load = () => {
    clearNotice();
    render();
  };
  view.append(page('Spend', windowForm(load), report));
  await usageReport(report, '/usages/detail', [BY_USER, BY_MODEL]);
}

async function meView(view) {
  const me = await api.get('/me');
  const report = el('div', { class: 'report' });
  view.append(page(`Your usage, ${me.name}`, budgetCards(me), windowForm(() => render()), report));
  await usageReport(report, '/me/usages/detail', [BY_MODEL]);
}

/** Spend, budget left and reset time, from /1/me; nothing when the server has no limits. */
function budgetCards(me) {
  if (!me.spend) return null;
  const limits = me.limits || {};
  const card = (label, spent, budget, resets) => {
    const left = budget ? decimalSub(budget, spent) : null;
    return el('div', { class: 'card stat' },
      el('div', { class: 'stat-label' }, label),
      el('div', { class: 'stat-value money' }, money(spent)),
      el('div', { class: 'muted' }, budget
        ? (left && !left.startsWith('-') ? `${money(left)} left of ${money(budget)}` : `Budget of ${money(budget)} used up`)
        : 'No budget set'),
      resets ? el('div', { class: 'muted small' }, `Resets ${when(resets)}`) : null);
  };
  const resets = me.resetsAt || {};
  const resetOf = (k) => (typeof resets === 'string' ? (k === 'month' ? resets : null) : resets[k]);
  const rate = [];
  if (limits.rpm != null) rate.push(`${count(limits.rpm)} requests per minute`);
  if (limits.maxConcurrent != null) rate.push(`${count(limits.maxConcurrent)} at a time`);
  return el('div', { class: 'stats', id: 'budget' },
    card('Spent this month', me.spend.month, limits.monthlyBudget, resetOf('month')),
    card('Spent today', me.spend.day, limits.dailyBudget, resetOf('day')),
    rate.length ? el('div', { class: 'card stat' }, el('div', { class: 'stat-label' }, 'Rate limits'),
      el('div', { class: 'stat-text' }, rate.join(' · '))) : null);
}

/** A button that asks once more before it acts (no modal dialogs). */
function confirmButton(label, confirmLabel, action) {
  const button = el('button', { type: 'button', class: 'ghost danger' }, label);
  let armed = null;
  button.addEventListener('click', async () => {
    if (!armed) {
      button.textContent = confirmLabel;
      button.classList.add('armed');
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
        button.classList.remove('armed');
      }, 5000);
      return;
    }
    clearTimeout(armed);
    button.disabled = true;
    try {
      await action();
    } catch (err) {
      fail(err);
      button.disabled = false;
    }
  });
  return button;
}

function limitsText(l) {
  if (!l) return 'None';
  const parts = [];
  if (l.monthlyBudget != null) parts.push(`${money(l.monthlyBudget)}/month`);
  if (l.dailyBudget != null) parts.push(`${money(l.dailyBudget)}/day`);
  if (l.rpm != null) parts.push(`${count(l.rpm)} rpm`);
  if (l.maxConcurrent != null) parts.push(`${count(l.maxConcurrent)} at a time`);
  return parts.length ? parts.join(' · ') : 'None';
}

function limitsForm(user, columns) {
  const l = user.limits || {};
  const field = (name, label, value, hint) => el('div', { class: 'field' },
    el('label', { for: `lim-${name}` }, label),
    el('input', { id: `lim-${name}`, name, value: value ?? '', inputmode: hint, placeholder: 'no limit', autocomplete: 'off' }));
  const form = el('form', { class: 'toolbar limits-form', 'aria-label': `Limits for ${user.name}` },
    field('monthlyBudget', 'Monthly budget (USD)', l.monthlyBudget, 'decimal'),
    field('dailyBudget', 'Daily budget (USD)', l.dailyBudget, 'decimal'),
    field('rpm', 'Requests per minute', l.rpm, 'numeric'),
    field('maxConcurrent', 'Max concurrent', l.maxConcurrent, 'numeric'),
    el('button', { type: 'submit', class: 'primary' }, 'Save limits'),
    el('button', { type: 'button', class: 'ghost', onclick: () => form.closest('tr').remove() }, 'Cancel'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const text = (k) => (String(data.get(k)).trim() || null);
    const whole = (k) => {
      const t = text(k);
      if (t === null) return null;
      if (!/^\d+$/.test(t)) throw new ApiError(400, `${k === 'rpm' ? 'Requests per minute' : 'Max concurrent'} must be a whole number`);
      return Number(t);
    };
    try {
      const body = { monthlyBudget: text('monthlyBudget'), dailyBudget: text('dailyBudget'), rpm: whole('rpm'), maxConcurrent: whole('maxConcurrent') };
      await api.send('PUT', `/users/${user.id}/limits`, body);
      await render();
      notify(`Saved the limits of ${user.name}.`);
    } catch (err) {
      fail(err);
    }
  });
  return el('tr', { class: 'edit-row' }, el('td', { colspan: columns }, form));
}

async function usersView(view) {
  const users = await api.get('/users');
  const hasLimits = users.some((u) => Object.prototype.hasOwnProperty.call(u, 'limits'));
  const name = el('input', { id: 'new-user', name: 'name', required: true, maxlength: 64, autocomplete: 'off' });
  const add = el('form', { class: 'toolbar', id: 'add-user', 'aria-label': 'Add a user' },
    el('div', { class: 'field' }, el('label', { for: 'new-user' }, 'Name'), name),
    el('button', { type: 'submit', class: 'primary' }, 'Add user'));
  add.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const user = await api.send('POST', '/users', { name: name.value });
      await render();
      notify(`Added ${user.name}. Their token is in the table: hand it over privately.`);
    } catch (err) {
      fail(err);
    }
  });
  const rows = users.map((u) => {
    const token = el('code', { class: 'token' }, '•'.repeat(8));
    const show = el('button', { type: 'button', class: 'ghost', 'aria-label': `Show the token of ${u.name}` }, 'Show');
    show.addEventListener('click', () => {
      const hidden = show.textContent === 'Show';
      token.textContent = hidden ? u.token : '•'.repeat(8);
      show.textContent = hidden ? 'Hide' : 'Show';
    });
    const actions = el('div', { class: 'actions' },
      confirmButton('Reset token', 'Really reset?', async () => {
        await api.send('POST', `/users/${u.id}/reset`);
        await render();
        notify(`${u.name} has a new token; the old one no longer works.`);
      }));
    const row = el('tr', { 'data-user': u.name },
      el('td', { class: 'num' }, String(u.id)),
      el('th', { scope: 'row' }, u.name, u.id === 1 ? el('span', { class: 'badge' }, 'root') : null),
      el('td', {}, el('div', { class: 'token-cell' }, token, show)),
      hasLimits ? el('td', { class: 'wrap' }, limitsText(u.limits)) : null,
      el('td', { class: 'muted', title: when(u.createdAt) }, String(u.createdAt).slice(0, 10)),
      el('td', {}, actions));
    if (hasLimits) {
      actions.prepend(el('button', {
        type: 'button',
        class: 'ghost',
        onclick: () => {
          const open = row.nextElementSibling;
          if (open?.classList.contains('edit-row')) open.remove();
          else row.after(limitsForm(u, 6));
        },
      }, 'Limits'));
    }
    if (u.id !== 1) {
      actions.append(confirmButton('Delete', 'Really delete?', async () => {
        await api.send('DELETE', `/users/${u.id}`);
        await render();
        notify(`Deleted ${u.name}. Their usage stays in the reports.`);
      }));
    }
    return row;
  });
  view.append(page('Users', add, el('div', { class: 'card' }, el('div', { class: 'table-wrap' },
    el('table', { id: 'users' },
      el('thead', {}, el('tr', {},
        el('th', { scope: 'col', class: 'num' }, 'ID'), el('th', { scope: 'col' }, 'Name'),
        el('th', { scope: 'col' }, 'Token'), hasLimits ? el('th', { scope: 'col' }, 'Limits') : null,
        el('th', { scope: 'col' }, 'Created'), el('th', { scope: 'col' }, 'Actions'))),
      el('tbody', {}, rows))))));
}

function maskKey(secret) {
  const s = String(secret || '');
  return s.length > 8 ? `${s.slice(0, 3)}…${s.slice(-4)}` : '…';
}

/** A key's health: `status` when the server reports it, else the cooldown it does report. */
function keyStatus(k) {
  if (typeof k.status === 'string') {
    const detail = [k.statusReason, k.statusUntil ? `until ${when(k.statusUntil)}` : null].filter(Boolean).join(', ');
    return el('span', {}, el('span', { class: `badge status-${k.status}` }, k.status),
      detail ? el('span', { class: 'muted small block' }, detail) : null);
  }
  if (k.cooldownSecs > 0) {
    return el('span', {}, el('span', { class: 'badge status-cooling' }, 'cooling'),
      el('span', { class: 'muted small block' }, `${count(k.cooldownSecs)} s left`));
  }
  return el('span', { class: 'badge status-active' }, 'active');
}

async function keysView(view) {
  const keys = await api.get('/keys');
  const field = (id, label, input) => el('div', { class: 'field' }, el('label', { for: id }, label), input);
  const add = el('form', { class: 'toolbar', id: 'add-key', 'aria-label': 'Add a key' },
    field('key-name', 'Name', el('input', { id: 'key-name', name: 'name', required: true, autocomplete: 'off' })),
    field('key-secret', 'API key', el('input', { id: 'key-secret', name: 'key', type: 'password', required: true, autocomplete: 'off' })),
    field('key-type', 'Type', el('select', { id: 'key-type', name: 'api_type' },
      el('option', { value: 'openai' }, 'OpenAI'), el('option', { value: 'azure_openai' }, 'Azure OpenAI'))),
    field('key-endpoint', 'Endpoint (optional)', el('input', { id: 'key-endpoint', name: 'endpoint', autocomplete: 'off', placeholder: 'default' })),
    el('button', { type: 'submit', class: 'primary' }, 'Add key'));
  add.addEventListener('submit', async (e) => {
    e.preventDefault();
    const data = Object.fromEntries(new FormData(add));
    try {
      const key = await api.send('POST', '/keys', data);
      await render();
      notify(`Added key ${key.name}.`);
    } catch (err) {
      fail(err);
    }
  });
  const switchable = keys.some((k) => typeof k.status === 'string');
  const rows = keys.map((k) => {
    const actions = el('div', { class: 'actions' });
    if (switchable) {
      const enable = k.status === 'disabled';
      actions.append(el('button', {
        type: 'button',
        class: 'ghost',
        onclick: async () => {
          try {
            await api.send('POST', `/keys/${k.id}/${enable ? 'enable' : 'disable'}`);
            await render();
            notify(`${enable ? 'Enabled' : 'Disabled'} key ${k.name}.`);
          } catch (err) {
            fail(err);
          }
        },
      }, enable ? 'Enable' : 'Disable'));
    }
    actions.append(confirmButton('Delete', 'Really delete?', async () => {
      await api.send('DELETE', `/keys/${k.id}`);
      await render();
      notify(`Deleted key ${k.name}. Its usage stays in the reports.`);
    }));
    return el('tr', { 'data-key': k.name },
      el('td', { class: 'num' }, String(k.id)), el('th', { scope: 'row' }, k.name),
      el('td', {}, k.ApiType === 'azure_openai' ? 'Azure' : 'OpenAI'),
      el('td', { class: 'muted' }, k.endpoint || 'default'),
      el('td', {}, el('code', {}, maskKey(k.key))), el('td', {}, keyStatus(k)), el('td', {}, actions));
  });
  const empty = el('tr', {}, el('td', { colspan: 7, class: 'empty' }, 'No keys yet: add the team\'s upstream key above.'));
  view.append(page('Keys', add, el('div', { class: 'card' }, el('div', { class: 'table-wrap' },
    el('table', { id: 'keys' },
      el('thead', {}, el('tr', {}, ['ID', 'Name', 'Type', 'Endpoint', 'Key', 'Status', 'Actions'].map((h, i) =>
        el('th', { scope: 'col', class: i ? null : 'num' }, h)))),
      el('tbody', {}, rows.length ? rows : empty))))));
}

// ---------------------------------------------------------------------------------------------
// Navigation and sign-in

const VIEWS = {
  spend: { title: 'Spend', show: spendView, root: true },
  users: { title: 'Users', show: usersView, root: true },
  keys: { title: 'Keys', show: keysView, root: true },
  me: { title: 'My usage', show: meView, root: false },
};

function isRoot() {
  return state.me && state.me.id === 1;
}

function currentView() {
  const name = location.hash.replace(/^#/, '');
  if (VIEWS[name]) return name;
  return isRoot() ? 'spend' : 'me';
}

let renderSeq = 0;

/** Draws the current view from fresh API answers; an API error is shown in its place. */
async function render() {
  const seq = ++renderSeq;
  const name = currentView();
  const nav = $('nav');
  nav.replaceChildren(...Object.entries(VIEWS)
    .filter(([, v]) => v.root === isRoot())
    .map(([key, v]) => el('a', { href: `#${key}`, 'aria-current': key === name ? 'page' : null }, v.title)));
  const view = el('div', { class: 'view', 'data-view': name, 'aria-busy': 'true' });
  $('view').replaceChildren(view);
  state.redraw = null;
  try {
    await VIEWS[name].show(view);
  } catch (err) {
    if (seq !== renderSeq) return;
    if (err instanceof ApiError && err.status === 401) return signOut(err.message);
    view.replaceChildren(page(VIEWS[name].title, el('p', { class: 'error', role: 'alert', id: 'view-error' }, err.message)));
  }
  view.removeAttribute('aria-busy');
}

async function signIn(token) {
  state.token = token;
  const me = await api.get('/me');
  state.me = me;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('signin').hidden = true;
  $('app').hidden = false;
  $('nav').hidden = false;
  $('who').hidden = false;
  $('who-name').textContent = `Signed in as ${me.name}`;
  clearNotice();
  await render();
  document.querySelector('#view h1')?.focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.me = null;
  $('app').hidden = true;
  $('nav').hidden = true;
  $('who').hidden = true;
  $('view').replaceChildren();
  $('signin').hidden = false;
  const error = $('signin-error');
  error.textContent = message || '';
  error.hidden = !message;
  const input = $('token');
  input.value = '';
  input.focus();
  if (location.hash) history.replaceState(null, '', location.pathname);
}

function start() {
  state.window = PRESETS['Last 30 days']();
  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = $('token').value.trim();
    if (!token) return signOut('Type your token first.');
    const button = e.target.querySelector('button');
    button.disabled = true;
    try {
      await signIn(token);
    } catch (err) {
      signOut(err.message);
    } finally {
      button.disabled = false;
    }
  });
  $('sign-out').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', () => {
    if (!state.token) return;
    clearNotice();
    render().then(() => document.querySelector('#view h1')?.focus());
  });
  let resize = null;
  window.addEventListener('resize', () => {
    clearTimeout(resize);
    resize = setTimeout(() => state.redraw && state.redraw(), 150);
  });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    // A reload keeps the session: no sign-in form flashes while /1/me answers.
    $('signin').hidden = true;
    signIn(saved).catch((err) => signOut(err.message));
  }
  else $('token').focus();
}

start();
