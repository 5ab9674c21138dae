// Validates rendered Kubernetes manifests offline (no API server), the way deploy/k8s needs them
// checked (tests/deploy/k8s_test.sh runs it on each rendered overlay):
//  1. schema: every object through kubernetes-models' own validator (types, formats, enums,
//     required fields: `replicas: "two"`, `cpu: lots`);
//  2. strict fields: every key of every object against the field list of its Kubernetes type, read
//     from the package's TypeScript declarations (the validator above lets unknown fields such as
//     `protocl:` through, and so would a real API server on a non-strict apply, silently);
//  3. consistency across objects, what a cluster would only show once running: Service and
//     NetworkPolicy selectors that select pods, ports that exist, Secrets and keys that exist,
//     flags whose files are mounted, the Prometheus relabeling of deploy/prometheus/kubernetes.yml,
//     the rendezvous port ranges, TLS names and tokens, GPU limits, Pod Security "restricted".
// Usage: node k8s_validate.mjs --npm DIR --name NAME --expect cpu|gpu [--prometheus FILE]
//          [--materialize DIR] FILE.yaml
// --materialize DIR: also lays out each workload's first container as the kubelet would, under
// DIR/root (Secret volumes as files, empty dirs for the other mounts) and writes its command line
// to DIR/<component>.argv, one argument a line, $(VAR)s expanded (spec.nodeName = node-1,
// status.podIP = 127.0.0.1) and mounted paths prefixed with DIR/root: k8s_test.sh runs the real
// binaries with them.
// Prints "ERROR Kind/name field: message" for each problem and the objects' count by kind;
// exit 1 when any problem was found, 2 on bad usage.
import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import { pathToFileURL } from "node:url";

// ---------------------------------------------------------------------------------------------
// Arguments and modules
const args = { npm: "build/deploy-npm", name: "render", expect: "", prometheus: "", files: [], cases: [], outDir: "" };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === "--npm") args.npm = process.argv[++i];
  else if (a === "--name") args.name = process.argv[++i];
  else if (a === "--expect") args.expect = process.argv[++i];
  else if (a === "--prometheus") args.prometheus = process.argv[++i];
  else if (a === "--materialize") args.materialize = process.argv[++i];
  else if (a === "--case") args.cases.push(process.argv[++i]);
  else if (a === "--out-dir") args.outDir = process.argv[++i];
  else if (a.startsWith("--")) usage(`unknown option ${a}`);
  else args.files.push(a);
}
if (args.cases.length) {
  if (args.files.length || !args.outDir) usage("--case needs --out-dir and no FILE");
  for (const c of args.cases) if (!/^[\w.-]+:(cpu|gpu):.+$/.test(c)) usage(`--case ${c}: not NAME:cpu|gpu:FILE`);
} else {
  if (args.files.length !== 1) usage("one rendered YAML file expected");
  if (!["cpu", "gpu"].includes(args.expect)) usage("--expect cpu|gpu");
}
function usage(msg) {
  console.error(`k8s_validate: ${msg}\nusage: node k8s_validate.mjs --npm DIR [--prometheus FILE] (--name NAME --expect cpu|gpu [--materialize DIR] FILE.yaml | --out-dir DIR --case NAME:cpu|gpu:FILE...)`);
  process.exit(2);
}
const nm = path.resolve(args.npm, "node_modules");
const modelsDir = path.join(nm, "kubernetes-models");
// js-yaml's ESM entry, from its package.json "exports" (the file moved between major versions).
const yamlPkg = JSON.parse(fs.readFileSync(path.join(nm, "js-yaml/package.json"), "utf8"));
const yamlEntry = yamlPkg.exports?.["."]?.import ?? yamlPkg.module ?? yamlPkg.main;
const yaml = await import(pathToFileURL(path.join(nm, "js-yaml", yamlEntry)));

const where = (o) => `${o?.kind ?? "?"}/${o?.metadata?.name ?? "?"}`;

// ---------------------------------------------------------------------------------------------
// Field lists from the .d.ts files of kubernetes-models and @kubernetes-models/apimachinery:
// `export interface IProbe { "exec"?: IIoK8sApiCoreV1ExecAction; ... }` plus
// `export type { IProbe as IIoK8sApiCoreV1Probe, ... }`. A field's type is a reference to
// another interface, an Array<...> or a { [key: string]: ... } map of one, or a leaf.
const types = new Map(); // global interface name -> Map(field -> type)
const byFile = new Map(); // .d.ts path -> Map(local name -> fields)
function* walkDts(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "node_modules") yield* walkDts(p);
    } else if (e.name.endsWith(".d.ts")) yield p;
  }
}
function splitMembers(body) {
  const out = [];
  let depth = 0, cur = "";
  for (const ch of body) {
    if (ch === "{" || ch === "<" || ch === "(" || ch === "[") depth++;
    if (ch === "}" || ch === ">" || ch === ")" || ch === "]") depth--;
    if (ch === ";" && depth === 0) { out.push(cur.trim()); cur = ""; } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}
function parseType(t) {
  t = t.trim();
  let m = /^Array<([\s\S]*)>$/.exec(t);
  if (m) return { array: parseType(m[1]) };
  m = /^\{\s*\[key: string\]:\s*([\s\S]*?);?\s*\}$/.exec(t);
  if (m) return { map: parseType(m[1]) };
  m = /^(I\w+)$/.exec(t);
  if (m) return { ref: m[1] };
  if (t.startsWith("{") && t.endsWith("}")) return { inline: parseMembers(t.slice(1, -1)) }; // e.g. volumeClaimTemplates
  return { leaf: t };
}
function parseMembers(body) {
  const fields = new Map();
  for (const mem of splitMembers(body)) {
    const f = /^"?([\w$@.\-]+)"?\??:\s*([\s\S]+)$/.exec(mem);
    if (f) fields.set(f[1], parseType(f[2]));
  }
  return fields;
}
function loadDts(file) {
  const src = fs.readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const local = new Map();
  const re = /export interface (\w+)(?: extends ([\w, ]+))? \{/g;
  let m;
  while ((m = re.exec(src))) {
    let i = re.lastIndex, depth = 1;
    while (depth > 0 && i < src.length) { if (src[i] === "{") depth++; else if (src[i] === "}") depth--; i++; }
    const fields = parseMembers(src.slice(re.lastIndex, i - 1));
    if (m[2] && m[2].includes("TypeMeta")) { fields.set("apiVersion", { leaf: "string" }); fields.set("kind", { leaf: "string" }); }
    local.set(m[1], fields);
  }
  const alias = /export type \{([^}]*)\}/g;
  while ((m = alias.exec(src))) {
    for (const part of m[1].split(",")) {
      const a = /(\w+) as (\w+)/.exec(part.trim());
      if (a && local.has(a[1])) types.set(a[2], local.get(a[1]));
    }
  }
  byFile.set(file, local);
}
for (const root of [modelsDir, path.join(nm, "@kubernetes-models/apimachinery")]) {
  for (const f of walkDts(root)) loadDts(f);
}
// Every referenced type resolves (else its subtree would go unchecked); scalars are type aliases.
const unresolved = new Set();
const visitType = (t) => { if (t.ref && !types.has(t.ref)) unresolved.add(t.ref); if (t.array) visitType(t.array); if (t.map) visitType(t.map); if (t.inline) for (const x of t.inline.values()) visitType(x); };
for (const f of types.values()) for (const t of f.values()) visitType(t);
const SCALARS = ["IIoK8sApimachineryPkgApiResourceQuantity", "IIoK8sApimachineryPkgApisMetaV1MicroTime", "IIoK8sApimachineryPkgApisMetaV1Time", "IIoK8sApimachineryPkgUtilIntstrIntOrString", "IJSONSchemaProps"];
const missing = [...unresolved].filter((t) => !SCALARS.includes(t));
if (missing.length) { console.error(`k8s_validate: the field lists reference types not found in ${nm}: ${missing.join(" ")} (package layout changed?)`); process.exit(2); }
if (types.size < 500) { console.error(`k8s_validate: only ${types.size} types read from ${nm}`); process.exit(2); }

function editDistance(a, b) {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}
let report = () => {}; // the current check()'s error()
function strict(obj, fields, value, at) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return; // the schema check types it
  for (const [k, v] of Object.entries(value)) {
    const t = fields.get(k);
    const p = at ? `${at}.${k}` : k;
    if (!t) {
      const near = [...fields.keys()].map((f) => [f.startsWith(k) ? 0 : editDistance(k, f), f]).sort((x, y) => x[0] - y[0])[0];
      report(obj, p, `unknown field "${k}"${near && near[0] <= 3 ? ` (did you mean "${near[1]}"?)` : ""}`);
      continue;
    }
    strictType(obj, t, v, p);
  }
}
function strictType(obj, t, v, p) {
  if (t.ref && types.has(t.ref)) strict(obj, types.get(t.ref), v, p);
  else if (t.inline) strict(obj, t.inline, v, p);
  else if (t.array && Array.isArray(v)) v.forEach((e, i) => strictType(obj, t.array, e, `${p}[${i}]`));
  else if (t.map && v && typeof v === "object") for (const [k, e] of Object.entries(v)) strictType(obj, t.map, e, `${p}.${k}`);
}

// Checks one rendered file: { lines: what to print, rc: 0 clean, 1 problems }.
async function check(name, expect, file, materialize) {
  const problems = [];
  const scraped = []; // what Prometheus would scrape, for the log
  const notes = [];
  function error(obj, field, msg) {
    problems.push(`ERROR ${typeof obj === "string" ? obj : where(obj)} ${field}: ${msg}`);
  }
  report = error;
  // ---------------------------------------------------------------------------------------------
  // 1 + 2: schema and strict fields, object by object
  const text = fs.readFileSync(file, "utf8");
  let docs;
  try {
    docs = yaml.loadAll(text).filter((d) => d !== null && d !== undefined);
  } catch (e) {
    return { lines: [`ERROR ${file} yaml: ${e.message.split("\n")[0]}`], rc: 1 };
  }
  if (docs.length === 0) return { lines: [`ERROR ${file} -: no objects rendered`], rc: 1 };
  const counts = {};
  for (const obj of docs) {
    counts[obj.kind] = (counts[obj.kind] || 0) + 1;
    if (typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") { error(obj, "apiVersion", "apiVersion and kind must be strings"); continue; }
    if (!obj.metadata?.name) error(obj, "metadata.name", "missing");
    const dir = obj.apiVersion.includes("/") ? obj.apiVersion : `v1`;
    const base = path.join(modelsDir, dir, obj.kind);
    if (!fs.existsSync(`${base}.js`)) { error(obj, "kind", `no ${obj.kind} in ${obj.apiVersion} (kubernetes-models knows none)`); continue; }
    const Model = (await import(pathToFileURL(`${base}.js`)))[obj.kind];
    // kustomize wraps generated Secret data in 70-column lines; the API server's base64 decoder
    // skips line breaks, the package's "byte" format does not: drop them for the schema check.
    const forSchema = obj.kind === "Secret" && obj.data
      ? { ...obj, data: Object.fromEntries(Object.entries(obj.data).map(([k, v]) => [k, typeof v === "string" ? v.replace(/[\r\n]/g, "") : v])) }
      : obj;
    try {
      new Model(forSchema).validate();
    } catch (e) {
      const seen = new Set();
      for (const er of e.errors ?? [{ instancePath: "", message: e.message }]) {
        if (er.keyword === "oneOf" || er.keyword === "anyOf") continue; // the branches say what is wrong
        const field = (er.instancePath || "/").slice(1).replace(/\/(\d+)(?=\/|$)/g, "[$1]").replace(/\//g, ".") || "-";
        const msg = `${er.message}${er.params?.allowedValues ? ` (${er.params.allowedValues.join(", ")})` : ""}`;
        if (!seen.has(field + msg)) { seen.add(field + msg); error(obj, field, msg); }
      }
    }
    const fields = byFile.get(`${base}.d.ts`)?.get(`I${obj.kind}`);
    if (!fields) error(obj, "kind", `no field list for ${obj.kind}`);
    else strict(obj, fields, obj, "");
  }

  // ---------------------------------------------------------------------------------------------
  // 3: consistency across objects
  const get = (kind, name) => docs.find((d) => d.kind === kind && d.metadata?.name === name);
  const workloads = docs.filter((d) => ["StatefulSet", "DaemonSet", "Deployment", "ReplicaSet", "Job"].includes(d.kind) && d.spec?.template);
  const podLabels = (w) => w.spec.template.metadata?.labels ?? {};
  const matches = (sel, labels) => sel && Object.entries(sel).every(([k, v]) => labels[k] === v);
  const selects = (labelSelector, labels) =>
    labelSelector && matches(labelSelector.matchLabels ?? {}, labels) &&
    (labelSelector.matchExpressions ?? []).every((e) =>
      e.operator === "In" ? e.values.includes(labels[e.key]) : e.operator === "NotIn" ? !e.values.includes(labels[e.key])
        : e.operator === "Exists" ? e.key in labels : !(e.key in labels));
  const containersOf = (w) => [...(w.spec.template.spec?.initContainers ?? []), ...(w.spec.template.spec?.containers ?? [])];
  const containerPorts = (w) => containersOf(w).flatMap((c) => c.ports ?? []);
  const hasPort = (w, port) => containerPorts(w).some((p) => p.containerPort === port || (typeof port === "string" && p.name === port));
  const flag = (c, name) => {
    for (const a of [...(c.command ?? []), ...(c.args ?? [])]) if (typeof a === "string" && a.startsWith(`${name}=`)) return a.slice(name.length + 1);
    const all = [...(c.command ?? []), ...(c.args ?? [])];
    const i = all.indexOf(name);
    return i >= 0 ? all[i + 1] : undefined;
  };
  const portOf = (addr) => (addr ? Number(addr.slice(addr.lastIndexOf(":") + 1)) : NaN);
  const hostOf = (addr) => addr.slice(0, addr.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  const range = (s) => { const m = /^(\d+)[- ]+(\d+)$/.exec(String(s).trim()); return m ? [Number(m[1]), Number(m[2])] : null; };
  const component = (w) => podLabels(w)["app.kubernetes.io/component"];
  const workerWl = workloads.filter((w) => component(w) === "worker");
  const coordWl = workloads.filter((w) => component(w) === "coordinator");
  const secretData = (s, key) => {
    const v = s?.data?.[key] ?? (s?.stringData?.[key] !== undefined ? Buffer.from(s.stringData[key]).toString("base64") : undefined);
    return v === undefined ? undefined : Buffer.from(v, "base64").toString("utf8");
  };

  function quantity(q) {
    if (typeof q === "number") return q;
    const m = /^([0-9.]+)(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$/.exec(String(q));
    if (!m) return NaN;
    const mult = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50 };
    return Number(m[1]) * (m[2] ? mult[m[2]] : 1);
  }

  // Namespaces: everything in one, and it exists.
  const nsObjs = docs.filter((d) => d.kind === "Namespace").map((d) => d.metadata.name);
  for (const d of docs) {
    if (["Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass", "PriorityClass"].includes(d.kind)) continue;
    const ns = d.metadata?.namespace;
    if (!ns) error(d, "metadata.namespace", "not set (it would land in whatever namespace kubectl uses)");
    else if (nsObjs.length && !nsObjs.includes(ns)) error(d, "metadata.namespace", `"${ns}" is not the rendered Namespace ${nsObjs.join(", ")}`);
  }

  // Workloads: selectors, references, mounts, flags, resources, security.
  const SAFE_SYSCTLS = ["kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"];
  const FILE_FLAGS = ["--auth-tokens", "--tls-cert", "--tls-key", "--tls-client-ca", "--tls-ca", "--token-file"];
  const DIR_FLAGS = ["--data-dir", "--artifact-root", "--work-dir"];
  const LISTEN_FLAGS = ["--listen", "--metrics-listen", "--health-listen"];
  for (const w of workloads) {
    const ps = w.spec.template.spec ?? {};
    const t = "spec.template.spec";
    if (!selects(w.spec.selector, podLabels(w))) error(w, "spec.selector", "does not match the pod template's labels (the API server refuses it)");
    if (ps.serviceAccountName && !get("ServiceAccount", ps.serviceAccountName)) error(w, `${t}.serviceAccountName`, `ServiceAccount "${ps.serviceAccountName}" is not rendered`);
    const sa = get("ServiceAccount", ps.serviceAccountName ?? "default");
    if (ps.automountServiceAccountToken !== false && sa?.automountServiceAccountToken !== false) error(w, `${t}.automountServiceAccountToken`, "not false: the pod would get an API token it never uses");
    const claimTemplates = (w.spec.volumeClaimTemplates ?? []).map((c) => c.metadata?.name);
    const volumes = new Map((ps.volumes ?? []).map((v) => [v.name, v]));
    for (const [i, v] of (ps.volumes ?? []).entries()) {
      const at = `${t}.volumes[${i}](${v.name})`;
      if (v.secret) {
        const s = get("Secret", v.secret.secretName);
        if (!s) error(w, `${at}.secret.secretName`, `Secret "${v.secret.secretName}" is not rendered`);
        else for (const it of v.secret.items ?? []) if (secretData(s, it.key) === undefined) error(w, `${at}.secret.items.key`, `Secret "${v.secret.secretName}" has no key "${it.key}"`);
      }
      if (v.configMap && !get("ConfigMap", v.configMap.name)) error(w, `${at}.configMap.name`, `ConfigMap "${v.configMap.name}" is not rendered`);
      if (v.persistentVolumeClaim && !get("PersistentVolumeClaim", v.persistentVolumeClaim.claimName)) error(w, `${at}.persistentVolumeClaim.claimName`, `PersistentVolumeClaim "${v.persistentVolumeClaim.claimName}" is not rendered`);
      if (v.hostPath) error(w, `${at}.hostPath`, "hostPath volumes break Pod Security \"restricted\"");
      if (claimTemplates.includes(v.name)) error(w, `${at}`, "shadows the volumeClaimTemplate of the same name");
    }
    for (const k of ["hostNetwork", "hostPID", "hostIPC"]) if (ps[k]) error(w, `${t}.${k}`, "host namespaces break Pod Security \"restricted\" (and the NetworkPolicy no longer applies)");
    for (const [i, s] of (ps.securityContext?.sysctls ?? []).entries()) if (!SAFE_SYSCTLS.includes(s.name)) error(w, `${t}.securityContext.sysctls[${i}]`, `${s.name} is not a safe sysctl: the kubelet refuses the pod`);
    containersOf(w).forEach((c, ci) => {
      const at = `${t}.containers[${ci}](${c.name})`;
      const sc = c.securityContext ?? {};
      if ((sc.runAsNonRoot ?? ps.securityContext?.runAsNonRoot) !== true) error(w, `${at}.securityContext.runAsNonRoot`, "not true");
      if ((sc.runAsUser ?? ps.securityContext?.runAsUser) === 0) error(w, `${at}.securityContext.runAsUser`, "is root");
      if (sc.allowPrivilegeEscalation !== false) error(w, `${at}.securityContext.allowPrivilegeEscalation`, "not false");
      if (sc.privileged) error(w, `${at}.securityContext.privileged`, "privileged");
      if (!(sc.capabilities?.drop ?? []).includes("ALL")) error(w, `${at}.securityContext.capabilities.drop`, "does not drop ALL");
      if ((sc.capabilities?.add ?? []).some((x) => x !== "NET_BIND_SERVICE")) error(w, `${at}.securityContext.capabilities.add`, "adds capabilities beyond NET_BIND_SERVICE");
      if (!["RuntimeDefault", "Localhost"].includes(sc.seccompProfile?.type ?? ps.securityContext?.seccompProfile?.type)) error(w, `${at}.securityContext.seccompProfile`, "neither RuntimeDefault nor Localhost");
      if (sc.readOnlyRootFilesystem !== true) error(w, `${at}.securityContext.readOnlyRootFilesystem`, "not true");
      const img = String(c.image ?? "");
      if (!/:[\w][\w.-]{0,127}$/.test(img.split("/").pop()) && !img.includes("@sha256:")) error(w, `${at}.image`, `"${img}" has no tag (set one with the overlay's images:)`);
      else if (img.endsWith(":latest")) error(w, `${at}.image`, `"${img}": pin a version, not latest`);
      // resources
      for (const kind of ["requests", "limits"]) for (const r of ["cpu", "memory"]) if (c.resources?.[kind]?.[r] === undefined) error(w, `${at}.resources.${kind}.${r}`, "not set");
      for (const [r, q] of Object.entries(c.resources?.requests ?? {})) {
        const lim = c.resources?.limits?.[r];
        if (lim !== undefined && quantity(q) > quantity(lim)) error(w, `${at}.resources.requests.${r}`, `${q} exceeds the limit ${lim}`);
      }
      // env: $(VAR) references and secret keys
      const envNames = new Set((c.env ?? []).map((e) => e.name));
      for (const [ai, a] of [...(c.command ?? []), ...(c.args ?? [])].entries()) {
        for (const m of String(a).matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) if (!envNames.has(m[1])) error(w, `${at}.args[${ai}]`, `$(${m[1]}) is no env var of the container: it would be passed literally`);
      }
      for (const [ei, e] of (c.env ?? []).entries()) {
        const ref = e.valueFrom?.secretKeyRef;
        if (ref) {
          const s = get("Secret", ref.name);
          if (!s) error(w, `${at}.env[${ei}].valueFrom.secretKeyRef.name`, `Secret "${ref.name}" is not rendered`);
          else if (secretData(s, ref.key) === undefined) error(w, `${at}.env[${ei}].valueFrom.secretKeyRef.key`, `Secret "${ref.name}" has no key "${ref.key}"`);
        }
      }
      for (const [ei, e] of (c.envFrom ?? []).entries()) if (e.secretRef && !get("Secret", e.secretRef.name)) error(w, `${at}.envFrom[${ei}].secretRef.name`, `Secret "${e.secretRef.name}" is not rendered`);
      // mounts
      const mounts = c.volumeMounts ?? [];
      for (const [mi, m] of mounts.entries()) if (!volumes.has(m.name) && !claimTemplates.includes(m.name)) error(w, `${at}.volumeMounts[${mi}].name`, `no volume "${m.name}"`);
      const mountFor = (p) => mounts.filter((m) => p === m.mountPath || p.startsWith(m.mountPath.replace(/\/$/, "") + "/")).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
      for (const f of FILE_FLAGS) {
        const p = flag(c, f);
        if (p === undefined) continue;
        const m = mountFor(p);
        if (!m) { error(w, `${at}.args(${f})`, `${p} is on no volume mount: the file does not exist in the image`); continue; }
        const v = volumes.get(m.name);
        if (v?.secret) {
          const rel = p.slice(m.mountPath.replace(/\/$/, "").length + 1);
          const items = v.secret.items;
          const key = items ? items.find((it) => it.path === rel)?.key : rel;
          if (!key) error(w, `${at}.args(${f})`, `${p}: volume "${m.name}" projects no "${rel}"`);
          else if (get("Secret", v.secret.secretName) && secretData(get("Secret", v.secret.secretName), key) === undefined) error(w, `${at}.args(${f})`, `${p}: Secret "${v.secret.secretName}" has no key "${key}"`);
        }
      }
      for (const f of DIR_FLAGS) {
        const p = flag(c, f);
        if (p === undefined) continue;
        const m = mountFor(p);
        const v = m && volumes.get(m.name);
        if (!m || m.readOnly || v?.secret || v?.configMap) error(w, `${at}.args(${f})`, `${p} is on no writable volume (the root filesystem is read-only)`);
      }
      for (const f of LISTEN_FLAGS) {
        const addr = flag(c, f);
        if (addr === undefined || addr === "") continue;
        const host = hostOf(addr);
        if (host.startsWith("127.") || host === "localhost" || host === "::1") error(w, `${at}.args(${f})`, `${addr} is loopback: no probe, peer or Prometheus reaches it`);
        if (!(c.ports ?? []).some((p) => p.containerPort === portOf(addr))) error(w, `${at}.args(${f})`, `port ${portOf(addr)} is not a containerPort`);
      }
      // probes: their ports are ports the container declares; a gRPC probe (the kubelet's is
      // plaintext, grpc.health.v1) goes to --health-listen, or to --listen when that has no TLS.
      const tls = !!flag(c, "--tls-cert"), listenPort = portOf(flag(c, "--listen")), healthPort = portOf(flag(c, "--health-listen"));
      for (const pr of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        const probe = c[pr];
        if (!probe) { if (ci === containersOf(w).length - 1 && pr !== "startupProbe") error(w, `${at}.${pr}`, "none"); continue; }
        for (const h of ["grpc", "httpGet", "tcpSocket"]) {
          if (!probe[h]) continue;
          if (!(c.ports ?? []).some((p) => p.containerPort === probe[h].port || p.name === probe[h].port)) error(w, `${at}.${pr}.${h}.port`, `${probe[h].port} is not a containerPort of ${c.name}`);
          if (h !== "grpc") continue;
          const port = probe.grpc.port;
          if (tls && port === listenPort) error(w, `${at}.${pr}.grpc`, `port ${port} speaks TLS (--tls-cert) and the kubelet's gRPC probe only plaintext: it never succeeds`);
          else if (port !== healthPort && (tls || port !== listenPort)) {
            const hp = isNaN(healthPort) ? "(not set)" : healthPort;
            error(w, `${at}.${pr}.grpc.port`, isNaN(listenPort) && isNaN(healthPort) ? `${port}: ${c.name} serves no gRPC (no --listen or --health-listen)`
              : tls ? `${port} is not the --health-listen port ${hp}: no plaintext grpc.health.v1 answers there`
              : `${port} is neither the --listen port ${listenPort} nor the --health-listen port ${hp}: no grpc.health.v1 answers there`);
          }
        }
      }
    });
    // Prometheus annotations
    const ann = w.spec.template.metadata?.annotations ?? {};
    if (ann["prometheus.io/port"] !== undefined) {
      const port = Number(ann["prometheus.io/port"]);
      const at = "spec.template.metadata.annotations[prometheus.io/port]";
      if (!hasPort(w, port)) error(w, at, `${ann["prometheus.io/port"]} is not a containerPort`);
      const mports = containersOf(w).map((c) => portOf(flag(c, "--metrics-listen"))).filter((p) => !isNaN(p));
      if (mports.length && !mports.includes(port)) error(w, at, `${port} is not the --metrics-listen port ${mports.join(", ")}`);
    }
  }

  // StatefulSets: a governing headless Service; the coordinator stays one replica.
  for (const s of docs.filter((d) => d.kind === "StatefulSet")) {
    const svc = get("Service", s.spec?.serviceName);
    if (!svc) error(s, "spec.serviceName", `Service "${s.spec?.serviceName}" is not rendered`);
    else if (svc.spec?.clusterIP !== "None") error(s, "spec.serviceName", `Service "${s.spec.serviceName}" is not headless (clusterIP: None)`);
    else if (!selects({ matchLabels: svc.spec.selector }, podLabels(s))) error(s, "spec.serviceName", `Service "${s.spec.serviceName}" does not select this StatefulSet's pods`);
    if (component(s) === "coordinator" && s.spec?.replicas !== 1) error(s, "spec.replicas", `${JSON.stringify(s.spec?.replicas)}: the coordinator must be exactly 1 (SQLite store, in-process scheduler)`);
  }

  // Services: select pods; their target ports exist on those pods.
  for (const svc of docs.filter((d) => d.kind === "Service")) {
    const sel = svc.spec?.selector;
    if (!sel) continue;
    const hit = workloads.filter((w) => matches(sel, podLabels(w)) && w.metadata.namespace === svc.metadata.namespace);
    if (!hit.length) { error(svc, "spec.selector", `${JSON.stringify(sel)} selects no pods of any rendered workload`); continue; }
    for (const [i, p] of (svc.spec.ports ?? []).entries()) {
      const tp = p.targetPort ?? p.port;
      for (const w of hit) if (!hasPort(w, tp)) error(svc, `spec.ports[${i}].targetPort`, `${tp} is not a containerPort of ${where(w)}`);
    }
  }

  // NetworkPolicies: select pods; their peers exist; the traffic vsdm needs is admitted.
  const policies = docs.filter((d) => d.kind === "NetworkPolicy");
  for (const np of policies) {
    const targets = workloads.filter((w) => selects(np.spec?.podSelector, podLabels(w)));
    if (!targets.length) error(np, "spec.podSelector", `${JSON.stringify(np.spec?.podSelector?.matchLabels ?? np.spec?.podSelector)} selects no pods of any rendered workload`);
    for (const dir of ["ingress", "egress"]) {
      for (const [ri, rule] of (np.spec?.[dir] ?? []).entries()) {
        for (const [pi, peer] of (rule[dir === "ingress" ? "from" : "to"] ?? []).entries()) {
          // A selector on app.kubernetes.io/ labels means pods of this render: it must select some.
          // Others (vsdm.io/client=true) admit pods users label themselves: noted, not required.
          const own = Object.keys(peer.podSelector?.matchLabels ?? {}).some((k) => k.startsWith("app.kubernetes.io/"));
          if (peer.podSelector && !peer.namespaceSelector && !own) notes.push(`${where(np)} admits pods labelled ${JSON.stringify(peer.podSelector.matchLabels)} (none rendered: yours to label)`);
          else if (peer.podSelector && !peer.namespaceSelector && !workloads.some((w) => selects(peer.podSelector, podLabels(w))))
            error(np, `spec.${dir}[${ri}].${dir === "ingress" ? "from" : "to"}[${pi}].podSelector`, `${JSON.stringify(peer.podSelector.matchLabels)} selects no pods of any rendered workload`);
        }
        for (const [pi, p] of (rule.ports ?? []).entries()) {
          if (p.endPort !== undefined && p.endPort < p.port) error(np, `spec.${dir}[${ri}].ports[${pi}].endPort`, `${p.endPort} < port ${p.port}`);
          if (dir === "ingress" && p.endPort === undefined && typeof p.port === "number" && targets.length && !targets.some((w) => hasPort(w, p.port)))
            error(np, `spec.ingress[${ri}].ports[${pi}].port`, `${p.port} is not a containerPort of the pods it selects`);
        }
      }
    }
  }
  // Does some policy admit TCP `port` from pod `src` into pod `dst` (ingress of dst, egress of src)?
  function admitted(dir, self, peer, port, peerLabelsOnly) {
    const pols = policies.filter((np) => selects(np.spec?.podSelector, podLabels(self)) && (np.spec.policyTypes ?? ["Ingress"]).includes(dir === "ingress" ? "Ingress" : "Egress"));
    if (!pols.length) return true; // not isolated in this direction
    return pols.some((np) => (np.spec[dir] ?? []).some((rule) => {
      const peers = rule[dir === "ingress" ? "from" : "to"];
      const peerOk = !peers || peers.some((pr) => peerLabelsOnly ? !!pr.namespaceSelector && !pr.podSelector : pr.podSelector && !pr.namespaceSelector && selects(pr.podSelector, podLabels(peer)));
      const portOk = !rule.ports || rule.ports.some((p) => (p.protocol ?? "TCP") === "TCP" && (p.port === undefined || (p.endPort !== undefined ? port >= p.port && port <= p.endPort : p.port === port || (typeof p.port === "string" && containerPorts(self).some((cp) => cp.name === p.port && cp.containerPort === port)))));
      return peerOk && portOk;
    }));
  }
  // The plaintext --health-listen port is the kubelet's (which comes from the node, not a pod):
  // no ingress rule may open it to pods or to every source. ipBlock peers (the nodes) may.
  for (const w of workloads) containersOf(w).forEach((c) => {
    const hp = portOf(flag(c, "--health-listen"));
    if (isNaN(hp)) return;
    for (const np of policies.filter((np) => selects(np.spec?.podSelector, podLabels(w)) && (np.spec.policyTypes ?? ["Ingress"]).includes("Ingress"))) {
      for (const [ri, rule] of (np.spec.ingress ?? []).entries()) {
        const portOk = !rule.ports || rule.ports.some((p) => (p.protocol ?? "TCP") === "TCP" && (p.port === undefined || (p.endPort !== undefined ? hp >= p.port && hp <= p.endPort : p.port === hp || (typeof p.port === "string" && (c.ports ?? []).some((cp) => cp.name === p.port && cp.containerPort === hp)))));
        const toPods = !rule.from || rule.from.some((pr) => pr.podSelector || pr.namespaceSelector);
        if (portOk && toPods) error(np, `spec.ingress[${ri}]`, `opens ${where(w)}'s plaintext health port ${hp} (--health-listen) to ${rule.from ? "pods" : "every source"}: only the kubelet, on the node, needs it`);
      }
    }
  });
  function path2(src, dst, port, why) {
    if (!admitted("egress", src, dst, port)) error(policies.find((np) => selects(np.spec.podSelector, podLabels(src))) ?? src, "spec.egress", `does not let ${where(src)} reach ${where(dst)} on TCP ${port} (${why})`);
    if (!admitted("ingress", dst, src, port)) error(policies.find((np) => selects(np.spec.podSelector, podLabels(dst))) ?? dst, "spec.ingress", `does not admit ${where(src)} into ${where(dst)} on TCP ${port} (${why})`);
  }
  if (!coordWl.length) error(`${name}`, "-", "no workload labelled app.kubernetes.io/component=coordinator");
  if (!workerWl.length) error(`${name}`, "-", "no workload labelled app.kubernetes.io/component=worker");
  for (const w of workloads) if (!policies.some((np) => selects(np.spec?.podSelector, podLabels(w)))) error(w, "spec.template.metadata.labels", "no NetworkPolicy selects these pods: everything may reach them");
  const coordC = coordWl[0] && containersOf(coordWl[0])[0];
  const storeRange = coordC && range(flag(coordC, "--store-port-range") ?? "29500-29999");
  for (const w of workerWl) {
    const wc = containersOf(w)[0];
    // worker -> coordinator, through the Service the agents dial
    const dial = flag(wc, "--coordinator");
    if (!dial) { error(w, "spec.template.spec.containers[0].args(--coordinator)", "not set: the agent dials 127.0.0.1:50051"); continue; }
    const svc = get("Service", hostOf(dial).split(".")[0]);
    const sp = svc?.spec?.ports?.find((p) => p.port === portOf(dial));
    if (!svc) error(w, "spec.template.spec.containers[0].args(--coordinator)", `${dial}: no Service "${hostOf(dial).split(".")[0]}" is rendered`);
    else if (!sp) error(w, "spec.template.spec.containers[0].args(--coordinator)", `${dial}: Service ${svc.metadata.name} has no port ${portOf(dial)}`);
    else if (coordC) {
      const target = typeof sp.targetPort === "string" ? coordC.ports?.find((p) => p.name === sp.targetPort)?.containerPort : sp.targetPort ?? sp.port;
      if (target !== portOf(flag(coordC, "--listen"))) error(svc, "spec.ports.targetPort", `${sp.targetPort} is not the coordinator's --listen port ${portOf(flag(coordC, "--listen"))}`);
      else path2(w, coordWl[0], target, "register and heartbeat");
    }
    // worker <-> worker: the TCPStore range and the ephemeral range (both ends)
    const sysctl = (w.spec.template.spec.securityContext?.sysctls ?? []).find((s) => s.name === "net.ipv4.ip_local_port_range");
    if (!sysctl) error(w, "spec.template.spec.securityContext.sysctls", "no net.ipv4.ip_local_port_range: the Gloo/NCCL ports the NetworkPolicy must admit are the node's guess");
    const eph = sysctl && range(sysctl.value);
    if (storeRange && eph && storeRange[1] >= eph[0] && storeRange[0] <= eph[1]) error(w, "spec.template.spec.securityContext.sysctls", `the ephemeral range ${sysctl.value} overlaps the coordinator's --store-port-range ${storeRange.join("-")}`);
    for (const [r, why] of [[storeRange, "c10d TCPStore, --store-port-range"], [eph, "Gloo/NCCL, ip_local_port_range"]]) {
      if (r) for (const port of [r[0], Math.floor((r[0] + r[1]) / 2), r[1]]) path2(w, w, port, why);
    }
    // TLS: agents use it exactly when the coordinator serves it; the name they dial is certified
    if (coordC) {
      const tlsOn = !!flag(coordC, "--tls-cert"), ca = flag(wc, "--tls-ca");
      if (tlsOn && !ca) error(w, "spec.template.spec.containers[0].args(--tls-ca)", "not set, but the coordinator serves TLS: the agents cannot connect");
      if (!tlsOn && ca) error(w, "spec.template.spec.containers[0].args(--tls-ca)", "set, but the coordinator serves plaintext: the agents cannot connect");
      if (tlsOn && ca) checkTls(w, wc, coordWl[0], coordC, flag(wc, "--tls-server-name") ?? hostOf(dial));
      checkTokens(w, wc, coordWl[0], coordC);
    }
    // sizes: what the coordinator admits fits the pod
    const slots = Number(flag(wc, "--slots") ?? 1), threads = Number(flag(wc, "--threads-per-rank") ?? 1);
    const cpuLim = quantity(wc.resources?.limits?.cpu), memLim = quantity(wc.resources?.limits?.memory);
    if (cpuLim < slots * threads) error(w, "spec.template.spec.containers[0].resources.limits.cpu", `${wc.resources.limits.cpu} < --slots ${slots} x --threads-per-rank ${threads}`);
    const rankMem = coordC ? Number(flag(coordC, "--max-rank-memory") ?? 16 * 2 ** 30) : NaN;
    if (rankMem > 0 && memLim < slots * rankMem + 512 * 2 ** 20) error(w, "spec.template.spec.containers[0].resources.limits.memory", `${wc.resources.limits.memory} < --slots ${slots} x the coordinator's --max-rank-memory ${rankMem} + 512Mi: an admitted job can be OOM-killed`);
    if (rankMem === 0) error(coordWl[0], "spec.template.spec.containers[0].args(--max-rank-memory)", "0 (no bound): no memory limit of the workers is safe");
    // GPU or not
    const gpus = quantity(wc.resources?.limits?.["nvidia.com/gpu"] ?? 0), devices = Number(flag(wc, "--devices") ?? 0);
    if (expect === "gpu") {
      if (!(gpus > 0)) error(w, "spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]", "not set: the gpu overlay's agents get no GPU");
      if (gpus !== devices) error(w, "spec.template.spec.containers[0].args(--devices)", `${devices} is not the nvidia.com/gpu limit ${gpus}`);
      const ps = w.spec.template.spec;
      if (!ps.nodeSelector && !ps.affinity?.nodeAffinity) error(w, "spec.template.spec.nodeSelector", "none: agents would land on nodes without GPUs and stay Pending");
      if (!(ps.tolerations ?? []).some((t) => t.key === "nvidia.com/gpu")) error(w, "spec.template.spec.tolerations", "no toleration for the nvidia.com/gpu taint");
    } else {
      if (devices !== 0) error(w, "spec.template.spec.containers[0].args(--devices)", `${devices}: the cpu overlay offers no GPUs`);
    }
  }
  if (expect === "cpu") for (const w of workloads) containersOf(w).forEach((c, ci) => {
    for (const k of ["requests", "limits"]) if (c.resources?.[k]?.["nvidia.com/gpu"] !== undefined) error(w, `spec.template.spec.containers[${ci}].resources.${k}[nvidia.com/gpu]`, "set in the cpu overlay");
  });

  // Where a file flag's content comes from: [Secret, key] through the container's mounts.
  function secretBehind(w, c, p) {
    const vols = new Map((w.spec.template.spec.volumes ?? []).map((v) => [v.name, v]));
    const m = (c.volumeMounts ?? []).find((m) => p.startsWith(m.mountPath.replace(/\/$/, "") + "/"));
    const v = m && vols.get(m.name);
    if (!v?.secret) return [];
    const rel = p.slice(m.mountPath.replace(/\/$/, "").length + 1);
    const key = v.secret.items ? v.secret.items.find((it) => it.path === rel)?.key : rel;
    const s = get("Secret", v.secret.secretName);
    return [s, key, secretData(s, key)];
  }
  function checkTls(w, wc, cw, cc, name) {
    const [, , caPem] = secretBehind(w, wc, flag(wc, "--tls-ca"));
    const [, , crtPem] = secretBehind(cw, cc, flag(cc, "--tls-cert"));
    const [, , keyPem] = secretBehind(cw, cc, flag(cc, "--tls-key"));
    if (!caPem || !crtPem || !keyPem) return; // already reported as missing
    const at = "spec.template.spec.containers[0].args(--tls-cert)";
    try {
      const crt = new crypto.X509Certificate(crtPem), ca = new crypto.X509Certificate(caPem);
      if (!crt.checkIssued(ca) || !crt.verify(ca.publicKey)) error(cw, at, `the certificate is not signed by the agents' --tls-ca`);
      if (!crt.checkPrivateKey(crypto.createPrivateKey(keyPem))) error(cw, "spec.template.spec.containers[0].args(--tls-key)", "the key does not match the certificate");
      const sans = (crt.subjectAltName ?? "").split(/,\s*/).map((s) => s.replace(/^(DNS|IP Address):/, ""));
      if (!sans.includes(name)) error(cw, at, `the certificate's SANs (${sans.join(", ")}) do not name "${name}", which the agents dial: TLS verification fails`);
      if (new Date(crt.validTo) < new Date()) error(cw, at, `the certificate expired on ${crt.validTo}`);
    } catch (e) {
      error(cw, at, `cannot read the certificate, key or CA: ${e.message}`);
    }
    // The private key goes to the coordinator only.
    for (const o of workloads) for (const v of o.spec.template.spec.volumes ?? []) {
      const s = v.secret && get("Secret", v.secret.secretName);
      const keys = v.secret?.items ? v.secret.items.map((i) => i.key) : Object.keys(s?.data ?? {});
      if (o !== cw && keys.some((k) => secretData(s, k) === keyPem)) error(o, `spec.template.spec.volumes(${v.name})`, "mounts the coordinator's TLS private key");
    }
  }
  function checkTokens(w, wc, cw, cc) {
    const tf = flag(wc, "--token-file"), af = flag(cc, "--auth-tokens");
    if (!af) { error(cw, "spec.template.spec.containers[0].args(--auth-tokens)", "not set: on a routable --listen the coordinator refuses to start (or, with --insecure, anyone can do anything)"); return; }
    if (!tf) { error(w, "spec.template.spec.containers[0].args(--token-file)", "not set: the coordinator refuses the agents"); return; }
    const [, , token] = secretBehind(w, wc, tf);
    const [, , table] = secretBehind(cw, cc, af);
    if (token === undefined || table === undefined) return;
    const lines = table.split("\n").map((l) => l.replace(/#.*/, "").trim()).filter(Boolean).map((l) => l.split(/\s+/));
    for (const [i, l] of lines.entries()) {
      if (l.length !== 3 || !["user", "admin", "worker"].includes(l[2]) || l[0].length < 16) error(cw, "spec.template.spec.containers[0].args(--auth-tokens)", `line ${i + 1} of the tokens file is not "TOKEN(>=16 chars) PRINCIPAL user|admin|worker"`);
    }
    const entry = lines.find((l) => l[0] === token.trim());
    if (!entry) error(w, "spec.template.spec.containers[0].args(--token-file)", "its token is not in the coordinator's --auth-tokens file: UNAUTHENTICATED");
    else if (entry[2] !== "worker") error(w, "spec.template.spec.containers[0].args(--token-file)", `its token has role ${entry[2]}, not worker`);
  }

  // Prometheus: deploy/prometheus/kubernetes.yml's relabeling, applied to each pod as pod service
  // discovery would label it, must keep it and scrape its metrics port.
  if (args.prometheus) {
    const cfg = yaml.load(fs.readFileSync(args.prometheus, "utf8"));
    const jobs = (cfg.scrape_configs ?? []).filter((j) => (j.kubernetes_sd_configs ?? []).some((s) => s.role === "pod"));
    if (!jobs.length) error(args.prometheus, "scrape_configs", "no job with kubernetes_sd_configs role pod");
    const sanitize = (s) => s.replace(/[^a-zA-Z0-9_]/g, "_");
    for (const w of workloads) {
      const ann = w.spec.template.metadata?.annotations ?? {};
      const mport = Number(ann["prometheus.io/port"]);
      const at = "spec.template.metadata";
      if (ann["prometheus.io/scrape"] === undefined) { error(w, `${at}.annotations[prometheus.io/scrape]`, "not set: Prometheus does not scrape these pods"); continue; }
      for (const job of jobs) {
        // one target per declared container port, as Kubernetes SD makes them
        for (const cp of containerPorts(w)) {
          let l = { __address__: `10.1.2.3:${cp.containerPort}`, __meta_kubernetes_pod_node_name: "node-1", __meta_kubernetes_namespace: w.metadata.namespace };
          for (const [k, v] of Object.entries(podLabels(w))) l[`__meta_kubernetes_pod_label_${sanitize(k)}`] = v;
          for (const [k, v] of Object.entries(ann)) l[`__meta_kubernetes_pod_annotation_${sanitize(k)}`] = v;
          let kept = true, droppedBy = "";
          for (const [ri, r] of (job.relabel_configs ?? []).entries()) {
            const val = (r.source_labels ?? []).map((s) => l[s] ?? "").join(r.separator ?? ";");
            const re = new RegExp(`^(?:${r.regex ?? "(.*)"})$`);
            const action = r.action ?? "replace";
            if (action === "keep" && !re.test(val)) { kept = false; droppedBy = `relabel_configs[${ri}] keeps ${r.source_labels.join(",")} =~ ${r.regex}, got "${val}"`; break; }
            if (action === "drop" && re.test(val)) { kept = false; droppedBy = `relabel_configs[${ri}] drops ${val}`; break; }
            if (action === "replace") {
              const m = re.exec(val);
              if (m) l[r.target_label] = (r.replacement ?? "$1").replace(/\$\{?(\d+)\}?/g, (_, n) => m[Number(n)] ?? "");
            }
          }
          if (!kept) { error(w, `${at}`, `${args.prometheus} job ${job.job_name}: ${droppedBy}: not scraped`); break; }
          if (portOf(l.__address__) !== mport) error(w, `${at}.annotations[prometheus.io/port]`, `${args.prometheus} job ${job.job_name} scrapes ${l.__address__}, not the metrics port ${mport}`);
          if (!l.component) error(w, `${at}.labels[app.kubernetes.io/component]`, `the scrape target gets no component label`);
          if (!problems.some((p) => p.includes(where(w)))) scraped.push(`${where(w)} -> ${l.__address__}${job.metrics_path ?? "/metrics"} component=${l.component}`);
          break; // every port ends at the same target
        }
        if (!Number.isNaN(mport)) {
          const npOk = admitted("ingress", w, null, mport, true);
          if (!npOk) error(policies.find((np) => selects(np.spec.podSelector, podLabels(w))) ?? w, "spec.ingress", `admits no namespace (Prometheus) into ${where(w)} on its metrics port ${mport}`);
        }
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The containers' command lines and files, for running the real binaries (--materialize).
  if (materialize) {
    const root = path.join(materialize, "root");
    const fieldValues = { "spec.nodeName": "node-1", "status.podIP": "127.0.0.1", "metadata.name": "pod-0", "metadata.namespace": "vsdm" };
    for (const w of workloads) {
      const c = w.spec.template.spec.containers[0];
      const vols = new Map((w.spec.template.spec.volumes ?? []).map((v) => [v.name, v]));
      const mounts = c.volumeMounts ?? [];
      for (const m of mounts) {
        const dir = path.join(root, m.mountPath);
        fs.mkdirSync(dir, { recursive: true });
        const v = vols.get(m.name);
        const s = v?.secret && get("Secret", v.secret.secretName);
        if (!s) continue;
        const items = v.secret.items ?? Object.keys(s.data ?? {}).map((k) => ({ key: k, path: k }));
        for (const it of items) fs.writeFileSync(path.join(dir, it.path), secretData(s, it.key) ?? "", { mode: 0o600 });
      }
      const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? fieldValues[e.valueFrom?.fieldRef?.fieldPath] ?? ""]));
      const argv = [...(c.command ?? []), ...(c.args ?? [])].map((a) => {
        a = String(a).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (x, n) => env[n] ?? x);
        for (const m of [...mounts].sort((x, y) => y.mountPath.length - x.mountPath.length)) {
          const eq = a.indexOf("=");
          const val = eq >= 0 ? a.slice(eq + 1) : a;
          if (val === m.mountPath || val.startsWith(m.mountPath.replace(/\/$/, "") + "/")) { a = (eq >= 0 ? a.slice(0, eq + 1) : "") + root + val; break; }
        }
        return a;
      });
      fs.writeFileSync(path.join(materialize, `${component(w) ?? w.metadata.name}.argv`), argv.join("\n") + "\n");
      fs.writeFileSync(path.join(materialize, `${component(w) ?? w.metadata.name}.env`), Object.entries(env).map(([k, v]) => `${k}=${v}`).join("\n") + "\n");
    }
  }

  // ---------------------------------------------------------------------------------------------
  const summary = Object.entries(counts).sort().map(([k, n]) => `${n} ${k}`).join(", ");
  const lines = [...problems, ...scraped.map((s) => `  prometheus: ${s}`), ...notes.map((n) => `  note: ${n}`)];
  lines.push(`${name}: ${docs.length} objects (${summary}); ${types.size} types known; ${problems.length} problem(s)`);
  return { lines, rc: problems.length ? 1 : 0 };
}

if (args.cases.length) {
  // Batch: one process for many renders (the broken fixtures); NAME.out and NAME.rc in --out-dir.
  fs.mkdirSync(args.outDir, { recursive: true });
  for (const c of args.cases) {
    const [name, expect, ...rest] = c.split(":");
    const r = await check(name, expect, rest.join(":"), "");
    fs.writeFileSync(path.join(args.outDir, `${name}.out`), r.lines.join("\n") + "\n");
    fs.writeFileSync(path.join(args.outDir, `${name}.rc`), `${r.rc}\n`);
  }
} else {
  const r = await check(args.name, args.expect, args.files[0], args.materialize);
  for (const l of r.lines) console.log(l);
  process.exit(r.rc);
}
