// The relay-bridge console: plain JavaScript, no framework, no CDN. Every text from the bridge goes into the page
// as text (textContent), never as HTML: group and account names come from other networks and may hold markup.
// The page talks only to its own origin: /_relay_bridge/v1 for views, /_matrix/provision/v3 for logins.
const V1 = '_relay_bridge/v1'
const V3 = '_matrix/provision/v3'
const NETWORK = { matrix: 'Matrix', signal: 'Signal', whatsapp: 'WhatsApp' }
const STATE = { connected: 'connected', connecting: 'connecting', disconnected: 'disconnected', logged_out: 'logged out', banned: 'banned' }

const $ = id => document.getElementById(id)
let csrf = ''
let me = null

/** An element with attributes and children (strings become text nodes, never HTML). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'class') e.className = v
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v)
    else e.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat(Infinity)) if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : document.createTextNode(String(c)))
  return e
}

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `The bridge answered ${status}.`)
    this.status = status
    this.errcode = body?.errcode
  }
}

async function api(method, path, body, signal) {
  const headers = { Accept: 'application/json' }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', signal })
  const data = await res.json().catch(() => ({}))
  if (!res.ok) throw new ApiError(res.status, data)
  return data
}

function say(text) {
  $('status').textContent = text
}

/** "5 minutes ago", with the exact time for those who ask. */
function when(ms) {
  if (!ms) return el('span', { class: 'muted' }, 'nothing yet')
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000))
  const ago = s < 60 ? 'just now' : s < 3600 ? `${Math.round(s / 60)} min ago` : s < 172800 ? `${Math.round(s / 3600)} h ago` : `${Math.round(s / 86400)} days ago`
  const d = new Date(ms)
  return el('time', { datetime: d.toISOString(), title: d.toLocaleString() }, ago)
}

function fact(dl, term, ...value) {
  dl.append(el('dt', {}, term), el('dd', {}, ...value))
}

function stateBadge(state) {
  return el('span', { class: `state state-${state}` }, STATE[state] ?? state)
}

// ---- views ------------------------------------------------------------------------------------------

function renderLogins(logins) {
  const list = $('login-list')
  list.replaceChildren()
  if (logins.length === 0) list.append(el('p', {}, me?.level === 'admin' ? 'No accounts are linked yet.' : 'You have no logins. Link one with `login signal` or `login whatsapp` in your direct chat with the bot.'))
  for (const l of logins) {
    const h = `login-${l.id}`
    const dl = el('dl', { class: 'facts' })
    fact(dl, 'State', stateBadge(l.state), l.state_message ? el('span', { class: 'detail' }, ` ${l.state_message}`) : '')
    fact(dl, 'Kind', l.kind === 'relay' ? 'relay (speaks for people in its portals)' : 'personal')
    if (l.address) fact(dl, l.network === 'signal' ? 'Number' : 'Account', l.address)
    fact(dl, 'Owner', l.owner)
    fact(dl, l.network === 'whatsapp' ? 'Phone last seen' : 'Last received', when(l.last_activity))
    fact(dl, 'Held messages', l.held.count ? [`${l.held.count} since `, when(l.held.since)] : 'none')
    fact(dl, 'Relays', `${l.portals} portal${l.portals === 1 ? '' : 's'}`)
    const actions = el('div', { class: 'actions' },
      el('button', { type: 'button', onclick: () => openRelink(l) }, 'Relink'),
      el('button', { type: 'button', class: 'danger', onclick: () => confirmLogout(l), disabled: l.state === 'logged_out' }, 'Log out'))
    list.append(el('article', { class: `card card-${l.state}`, 'aria-labelledby': h, 'data-login': l.id },
      el('h3', { id: h }, `${NETWORK[l.network]}: ${l.name} `, el('span', { class: 'id' }, l.id)), dl, actions))
  }
}

function groupLine(g) {
  if (!g.id) return el('span', { class: 'muted' }, 'not linked')
  return el('span', {}, g.name ? el('strong', { class: 'group-name' }, g.name) : el('span', { class: 'muted' }, '(name unknown)'), ' ',
    el('code', { class: 'id' }, g.id), ' — ',
    g.relay ? ['relayed by ', el('span', { class: 'id' }, g.relay.id), ` (${g.relay.name}, `, stateBadge(g.relay.state), ')'] : el('span', { class: 'warn' }, 'no relay set'))
}

function renderPortals(portals) {
  const list = $('portal-list')
  list.replaceChildren()
  if (portals.length === 0) list.append(el('p', {}, me?.level === 'admin' ? 'No rooms are bridged yet.' : 'No bridged room that you administer.'))
  for (const p of portals) {
    const h = `portal-${p.id}`
    const dl = el('dl', { class: 'facts' })
    fact(dl, 'Room', el('a', { href: p.matrix_to, rel: 'noopener noreferrer', target: '_blank' }, 'Open in Matrix'), ' ', el('code', { class: 'id' }, p.room_id))
    fact(dl, 'Signal group', groupLine(p.signal))
    fact(dl, 'WhatsApp group', groupLine(p.whatsapp))
    const queue = p.queue.filter(q => q.pending || q.held || q.failed)
    fact(dl, 'Queue', queue.length ? queue.map((q, i) => [i ? '; ' : '', `${NETWORK[q.network]}: ${q.pending} waiting, ${q.held} held, ${q.failed} failed`]) : 'empty')
    fact(dl, 'Last message', p.last_message_at ? when(p.last_message_at) : el('span', { class: 'muted' }, 'none yet'))
    const card = el('article', { class: 'card', 'aria-labelledby': h, 'data-portal': p.id }, el('h3', { id: h }, p.name || p.room_id), dl)
    if (p.problems.length) {
      card.append(el('table', {},
        el('caption', {}, 'Held and failed deliveries'),
        el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'To'), el('th', { scope: 'col' }, 'State'), el('th', { scope: 'col' }, 'Queued'), el('th', { scope: 'col' }, 'Reason'))),
        el('tbody', {}, p.problems.map(d => el('tr', {}, el('td', {}, NETWORK[d.network]), el('td', {}, d.state), el('td', {}, when(d.queued_at)), el('td', {}, d.reason ?? ''))))))
    }
    list.append(card)
  }
}

function renderHealth(h) {
  const dl = $('health-list')
  dl.replaceChildren()
  const ok = (c, what) => c.reachable ? el('span', { class: 'ok' }, `${what} answers`) : el('span', { class: 'bad' }, `${what} does not answer: ${c.problem ?? 'unknown'}`)
  fact(dl, 'Homeserver', ok(h.homeserver, 'The homeserver'))
  for (const s of h.services) fact(dl, s.name, ok(s, s.name), s.version ? ` (version ${s.version})` : '')
  fact(dl, 'Database', ok(h.database, 'The database'))
  fact(dl, 'Metrics', h.metrics_url ? el('a', { href: h.metrics_url, rel: 'noopener noreferrer' }, h.metrics_url) : 'switched off')
  fact(dl, 'Bridge version', h.version)
}

/** Where the keyboard is, as something that survives a re-render: the card and the control's text. */
function focusKey() {
  const a = document.activeElement
  const card = a?.closest?.('article[aria-labelledby]')
  return card && a !== card ? { card: card.getAttribute('aria-labelledby'), tag: a.tagName, text: a.textContent } : null
}

function render(snapshot) {
  // A live update must not throw a keyboard user back to the top of the page.
  const key = focusKey()
  renderLogins(snapshot.logins)
  renderPortals(snapshot.portals)
  renderHealth(snapshot.health)
  for (const id of ['logins', 'portals', 'health', 'nav']) $(id).hidden = false
  if (key) {
    const card = [...document.querySelectorAll('article[aria-labelledby]')].find(c => c.getAttribute('aria-labelledby') === key.card)
    const again = card && [...card.querySelectorAll(key.tag)].find(e => e.textContent === key.text)
    again?.focus()
  }
}

// ---- relink -----------------------------------------------------------------------------------------

let relinking = null

function relinkReset() {
  for (const id of ['relink-phone', 'relink-qr', 'relink-pair', 'relink-text', 'relink-again']) $(id).hidden = true
  $('relink-choice').replaceChildren()
  $('relink-state').textContent = ''
}

function openRelink(login) {
  relinkReset()
  $('relink-h').textContent = `Relink ${NETWORK[login.network]}: ${login.name}`
  $('relink-what').textContent = `Link ${login.id} again by scanning a code with the phone of this account.`
  const choice = $('relink-choice')
  choice.append(el('button', { type: 'button', onclick: () => runRelink(login, `${login.network}-qr`) }, 'Show a QR code'))
  if (login.network === 'whatsapp') choice.append(el('button', { type: 'button', onclick: () => runRelink(login, 'whatsapp-phone') }, 'Use a pairing code instead'))
  $('relink-again').onclick = () => openRelink(login)
  if (!$('relink').open) $('relink').showModal()
  choice.querySelector('button').focus()
}

function showStep(login, step) {
  const d = step.display_and_wait
  $('relink-instructions').textContent = step.instructions
  if (d.type === 'qr') {
    const img = $('relink-qr-img')
    img.src = d.image_url
    img.alt = `QR code to scan with ${NETWORK[login.network]} on the phone. It holds: ${d.data}`
    $('relink-qr').hidden = false
    $('relink-text').hidden = false
    $('relink-data').textContent = d.data
    $('relink-data').dataset.qr = d.data
    const link = $('relink-link')
    link.hidden = !d.data.startsWith('sgnl://')
    if (!link.hidden) {
      link.href = d.data
      link.textContent = 'Open as a link'
    }
  } else {
    // Shown as WhatsApp shows it (two groups of four); read out one character at a time.
    const pair = $('relink-pair')
    const first = pair.hidden
    pair.hidden = false
    $('relink-code').textContent = d.data.length === 8 ? `${d.data.slice(0, 4)}-${d.data.slice(4)}` : d.data
    $('relink-code-spelled').textContent = `Pairing code: ${d.data.split('').join(' ')}`
    $('relink-state').textContent = step.instructions
    // The phone number form that had the focus is gone: the keyboard and a screen reader go to the code.
    if (first) pair.focus()
  }
}

async function runRelink(login, flow) {
  relinkReset()
  const abort = new AbortController()
  relinking = abort
  const status = $('relink-state')
  status.textContent = `Asking ${NETWORK[login.network]} for a code…`
  try {
    let step = await api('POST', `${V3}/login/start/${encodeURIComponent(flow)}?login_id=${encodeURIComponent(login.id)}`, undefined, abort.signal)
    const pid = step.login_id
    if (step.type === 'user_input') {
      const form = $('relink-phone')
      form.hidden = false
      status.textContent = step.instructions
      $('relink-number').focus()
      const phone = await new Promise(resolve => {
        form.onsubmit = ev => {
          ev.preventDefault()
          resolve($('relink-number').value)
        }
      })
      form.hidden = true
      status.textContent = 'Asking WhatsApp for a pairing code…'
      step = await api('POST', `${V3}/login/step/${pid}/${encodeURIComponent(step.step_id)}/user_input`, { phone_number: phone }, abort.signal)
    }
    let first = true
    while (step.type === 'display_and_wait') {
      showStep(login, step)
      if (first && step.display_and_wait.type === 'qr') status.textContent = 'Waiting for the phone to scan the code. The code changes by itself when the network replaces it.'
      first = false
      step = await api('POST', `${V3}/login/step/${pid}/${encodeURIComponent(step.step_id)}/display_and_wait`, undefined, abort.signal)
    }
    for (const id of ['relink-qr', 'relink-pair', 'relink-text']) $(id).hidden = true
    status.textContent = `Linked. ${step.instructions}`
    status.dataset.linked = step.complete?.user_login_id ?? ''
    $('relink-close').focus()
  } catch (err) {
    if (abort.signal.aborted) return
    for (const id of ['relink-qr', 'relink-pair', 'relink-text']) $(id).hidden = true
    status.textContent = err.message
    $('relink-again').hidden = false
    $('relink-again').focus()
  } finally {
    if (relinking === abort) relinking = null
  }
}

$('relink-close').addEventListener('click', () => $('relink').close())
$('relink').addEventListener('close', () => {
  relinking?.abort()
  relinking = null
  delete $('relink-state').dataset.linked
})

// ---- log out ----------------------------------------------------------------------------------------

let confirming = null

function confirmLogout(login) {
  confirming = login
  $('confirm-h').textContent = `Log out ${login.id}?`
  $('confirm-text').textContent = `The bridge stops using the ${NETWORK[login.network]} account “${login.name}” and deletes what it kept of it. ` +
    `Its ${login.portals} portal${login.portals === 1 ? '' : 's'} keep their links; messages for ${NETWORK[login.network]} wait until a relay account is set there again.`
  $('confirm').showModal()
}

$('confirm-no').addEventListener('click', () => $('confirm').close())
$('confirm-yes').addEventListener('click', async () => {
  const login = confirming
  $('confirm').close()
  if (!login) return
  try {
    await api('POST', `${V3}/logout/${encodeURIComponent(login.id)}`)
    say(`Logged out ${login.id}.`)
  } catch (err) {
    say(`Could not log out ${login.id}: ${err.message}`)
  }
})

// ---- sign-in and live updates ----------------------------------------------------------------------

function signedOut(why) {
  $('signin').hidden = false
  $('signin-why').textContent = why
  for (const id of ['logins', 'portals', 'health', 'nav', 'signout']) $(id).hidden = true
  $('who').textContent = ''
}

function listen() {
  const source = new EventSource(`${V1}/events`)
  source.addEventListener('snapshot', ev => {
    render(JSON.parse(ev.data))
    if (/^Connecting|^The connection/.test($('status').textContent)) say('')
  })
  source.addEventListener('error', async () => {
    if (source.readyState === EventSource.CLOSED) {
      // Closed for good: the session ended (or the bridge went away); find out which.
      try {
        await api('GET', `${V1}/session`)
        say('The connection to the bridge was lost; retrying…')
        setTimeout(listen, 3000)
      } catch {
        signedOut('Your session has ended.')
      }
    } else say('The connection to the bridge was lost; retrying…')
  })
}

async function start() {
  const token = new URLSearchParams(location.hash.slice(1)).get('signin')
  try {
    let session
    if (token) {
      // The token leaves the address bar at once: it must not stay in the history or be bookmarked.
      history.replaceState(null, '', location.pathname + location.search)
      session = await api('POST', `${V1}/session`, { token })
    } else session = await api('GET', `${V1}/session`)
    csrf = session.csrf_token
    me = session
    $('who').textContent = `Signed in as ${session.user_id} (${session.level})`
    $('signout').hidden = false
    say('Connecting…')
    listen()
  } catch (err) {
    signedOut(err.status === 401 ? 'You are not signed in.' : err.message)
  }
}

$('signout').addEventListener('click', async () => {
  await api('DELETE', `${V1}/session`).catch(() => {})
  location.reload()
})

start()
