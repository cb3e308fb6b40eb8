#!/usr/bin/env node
/**
 * The Wechaty puppet-service reference server for the tests: npm wechaty-puppet-service's
 * PuppetServer serving a wechaty-puppet-mock puppet, on 127.0.0.1:<port>.
 *
 *   node server.cjs --port N --token T [--no-tls] [--state FILE]
 *
 * The mock is wrapped so that every send it receives is recorded (the stock mock records text
 * and file sends only through its own message events, and merely logs url, mini-program and
 * contact-card sends) and answered with a message id.
 *
 * Control: one JSON command per line on stdin ({"id": 1, "cmd": "...", ...}); one JSON line per
 * answer ({"id": 1, "ok": true, "result": ...}) or event ({"event": "..."}) on stdout. Commands:
 *   scan {status, qrcode?}                 emit a scan event (2 waiting, 3 scanned, 4 confirmed, 5 timeout, 1 cancel)
 *   login {name}                           create the user contact and log it in
 *   contact {name}                         create a contact, -> its id
 *   room {topic, members}                  create a room of those contact ids, -> its id
 *   say {from, to, text, mentions?}        an incoming text message (to: the user's id or a room id)
 *   say_file {from, to, name, url}         an incoming file/image message (FileBox by URL)
 *   room_topic {room, topic, by}  room_join {room, contacts, by}  room_leave {room, contacts, by}
 *   dirty {type, payload_id}               a DIRTY event (type: wechaty-puppet DirtyType number)
 *   logout                                 the account logs out (remotely)
 *   calls                                  -> every send call recorded so far
 * With --state FILE the logged-in user survives a restart of this process (as a provider that
 * keeps the session does): started again, the puppet logs that user in without a new scan.
 */
'use strict'
const fs = require('fs')
const readline = require('readline')
const PUPPET = require('wechaty-puppet')
const { FileBox } = require('file-box')
const { PuppetMock } = require('wechaty-puppet-mock')
const { PuppetServer } = require('wechaty-puppet-service')

function arg(name, fallback) {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : fallback
}
const port = Number(arg('--port'))
const token = arg('--token')
const noTls = process.argv.includes('--no-tls')
const stateFile = arg('--state')

function out(obj) { process.stdout.write(JSON.stringify(obj) + '\n') }
function loadState() {
  if (!stateFile || !fs.existsSync(stateFile)) return {}
  return JSON.parse(fs.readFileSync(stateFile, 'utf8'))
}
function saveState(state) { if (stateFile) fs.writeFileSync(stateFile, JSON.stringify(state)) }

class RecordingPuppet extends PuppetMock {
  constructor(options) {
    super(options)
    this.calls = []
    this.sequence = 0
  }

  record(method, args) {
    if (!this.isLoggedIn) throw new Error('not logged in')
    const id = `mock-msg-${process.pid}-${++this.sequence}`
    const call = { method, args, id }
    this.calls.push(call)
    out({ event: 'call', call })
    return id
  }

  async onStart() {
    await super.onStart()
    const state = loadState()
    setTimeout(() => {
      if (state.user) {
        const user = this.mocker.createContact(state.user)
        this.mocker.login(user)
        out({ event: 'restored', user: user.id })
      } else {
        this.mocker.scan(`https://login.mock.invalid/qr/${Date.now()}`, PUPPET.types.ScanStatus.Waiting)
      }
    }, 100)
  }

  ding(data) { setTimeout(() => this.emit('dong', { data: data || '' }), 50) }

  async messageSendText(conversationId, text, mentionIdList) {
    return this.record('messageSendText', { conversationId, text, mentionIdList: mentionIdList || [] })
  }
  async messageSendFile(conversationId, file) {
    const recorded = { name: file.name, type: file.type, url: file.remoteUrl || null }
    if (!file.remoteUrl) {  // uploaded bytes: record what arrived
      const buffer = await file.toBuffer()
      recorded.size = buffer.length
      recorded.sha256 = require('crypto').createHash('sha256').update(buffer).digest('hex')
    }
    return this.record('messageSendFile', { conversationId, file: recorded })
  }
  async messageSendUrl(conversationId, urlLinkPayload) {
    return this.record('messageSendUrl', { conversationId, urlLink: urlLinkPayload })
  }
  async messageSendMiniProgram(conversationId, miniProgramPayload) {
    return this.record('messageSendMiniProgram', { conversationId, miniProgram: miniProgramPayload })
  }
  async messageSendContact(conversationId, contactId) {
    return this.record('messageSendContact', { conversationId, contactId })
  }
  async messageSendLocation(conversationId, locationPayload) {
    return this.record('messageSendLocation', { conversationId, location: locationPayload })
  }
}

async function main() {
  const puppet = new RecordingPuppet()
  const server = new PuppetServer({ endpoint: `127.0.0.1:${port}`, puppet, token, tls: { disable: noTls } })
  await server.start()
  const mocker = puppet.mocker
  const contact = id => mocker.ContactMock.load(id)
  const room = id => mocker.RoomMock.load(id)
  const conversation = id => (/@/.test(id) ? room(id) : contact(id))

  const commands = {
    scan: c => mocker.scan(c.qrcode || `https://login.mock.invalid/qr/${Date.now()}`, c.status),
    login: c => {
      const user = mocker.createContact({ name: c.name || 'Mock User' })
      mocker.login(user)
      saveState({ user: user.payload })
      return user.id
    },
    contact: c => mocker.createContact({ name: c.name }).id,
    room: c => mocker.createRoom({ topic: c.topic, memberIdList: c.members }).id,
    say: c => { contact(c.from).say(c.text, (c.mentions || []).map(contact)).to(conversation(c.to)) },
    say_file: c => { contact(c.from).say(FileBox.fromUrl(c.url, { name: c.name })).to(conversation(c.to)) },
    room_topic: c => { room(c.room).topic(c.topic).by(contact(c.by)) },
    room_join: c => { room(c.room).add(...c.contacts.map(contact)).by(contact(c.by)) },
    room_leave: c => { room(c.room).remove(...c.contacts.map(contact)).by(contact(c.by)) },
    dirty: c => puppet.emit('dirty', { payloadType: c.type, payloadId: c.payload_id }),
    logout: async () => { saveState({}); await puppet.logout('logged out on the phone') },
    calls: () => puppet.calls,
  }

  readline.createInterface({ input: process.stdin }).on('line', async line => {
    let c
    try {
      c = JSON.parse(line)
      const result = await commands[c.cmd](c)
      out({ id: c.id, ok: true, result: result === undefined ? null : result })
    } catch (e) {
      out({ id: c && c.id, ok: false, error: String(e && e.message || e) })
    }
  })
  process.stdin.on('end', async () => { await server.stop(); process.exit(0) })
  out({ event: 'ready', port, version: server.version() })
}

main().catch(e => { console.error(e); process.exit(1) })
