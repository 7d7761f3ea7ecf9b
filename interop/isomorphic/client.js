#!/usr/bin/env node
// Drives isomorphic-git for interop/test_isomorphic_git.py.
//
//   node client.js COMMAND 'JSON-ARGUMENTS'
//
// Prints one JSON document on stdout. On failure prints the error on stderr and exits 1.
// File contents travel as base64 so that bytes are compared exactly on the Python side.
'use strict'

const fs = require('fs')
const path = require('path')
const git = require('isomorphic-git')
const http = require('isomorphic-git/http/node')

const AUTHOR = { name: 'A U Thor', email: 'author@example.com' }
const COMMITTER = { name: 'C O Mitter', email: 'committer@example.com' }

async function localRefs (dir) {
  // Every branch, remote-tracking branch and tag, unpeeled; symbolic refs (origin/HEAD) are left out.
  const refs = {}
  for (const prefix of ['refs/heads', 'refs/remotes/origin', 'refs/tags']) {
    for (const name of await git.listRefs({ fs, dir, filepath: prefix })) {
      if (name === 'HEAD') continue
      const full = `${prefix}/${name}`
      refs[full] = await git.resolveRef({ fs, dir, ref: full })
    }
  }
  return refs
}

async function tagObjects (dir, refs) {
  // The parsed annotated tags among the tag refs.
  const tags = {}
  for (const [ref, oid] of Object.entries(refs)) {
    if (!ref.startsWith('refs/tags/')) continue
    const { type } = await git.readObject({ fs, dir, oid, format: 'content' })
    if (type === 'tag') {
      const { tag } = await git.readTag({ fs, dir, oid })
      tags[ref] = { object: tag.object, type: tag.type, tag: tag.tag, message: tag.message }
    }
  }
  return tags
}

async function files (dir, oid, paths) {
  const out = {}
  for (const filepath of paths || []) {
    const { blob } = await git.readBlob({ fs, dir, oid, filepath })
    out[filepath] = Buffer.from(blob).toString('base64')
  }
  return out
}

async function serverRefs (url, protocolVersion) {
  const listed = await git.listServerRefs({ http, url, protocolVersion, symrefs: true, peelTags: true })
  return listed.map(({ ref, oid, target, peeled }) => ({ ref, oid, target, peeled }))
}

const commands = {
  async clone ({ url, dir, paths }) {
    await git.clone({ fs, http, dir, url, singleBranch: false })
    const head = await git.resolveRef({ fs, dir, ref: 'HEAD' })
    const refs = await localRefs(dir)
    return {
      head,
      branch: await git.currentBranch({ fs, dir, fullname: true }),
      refs,
      tags: await tagObjects(dir, refs),
      files: await files(dir, head, paths),
      serverRefsV1: await serverRefs(url, 1),
      serverRefsV2: await serverRefs(url, 2)
    }
  },

  async fetch ({ dir, paths }) {
    const result = await git.fetch({ fs, http, dir, remote: 'origin', singleBranch: false, tags: true })
    const refs = await localRefs(dir)
    return {
      fetchHead: result.fetchHead,
      refs,
      files: await files(dir, refs['refs/remotes/origin/main'], paths)
    }
  },

  async commit ({ dir, files: contents, message, timestamp, branch, from }) {
    if (branch) {
      // git.branch's checkout option only moves HEAD; git.checkout also updates index and files.
      await git.branch({ fs, dir, ref: branch, object: from })
      await git.checkout({ fs, dir, ref: branch })
    }
    for (const [filepath, b64] of Object.entries(contents)) {
      const target = path.join(dir, filepath)
      fs.mkdirSync(path.dirname(target), { recursive: true })
      fs.writeFileSync(target, Buffer.from(b64, 'base64'))
      await git.add({ fs, dir, filepath })
    }
    const when = { timestamp, timezoneOffset: 0 }
    const oid = await git.commit({
      fs,
      dir,
      message,
      author: { ...AUTHOR, ...when },
      committer: { ...COMMITTER, ...when }
    })
    return { oid, branch: await git.currentBranch({ fs, dir, fullname: true }) }
  },

  async push ({ dir, ref, remoteRef, delete: del }) {
    const result = await git.push({ fs, http, dir, remote: 'origin', ref, remoteRef, delete: Boolean(del) })
    return { ok: result.ok, error: result.error || null, refs: result.refs }
  }
}

async function main () {
  const [command, json] = process.argv.slice(2)
  if (!Object.hasOwn(commands, command)) {
    throw new Error(`unknown command ${JSON.stringify(command)}; one of ${Object.keys(commands).join(', ')}`)
  }
  const result = await commands[command](JSON.parse(json || '{}'))
  process.stdout.write(JSON.stringify(result) + '\n')
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`)
  if (err && err.data) process.stderr.write(`data: ${JSON.stringify(err.data)}\n`)
  process.exit(1)
})
