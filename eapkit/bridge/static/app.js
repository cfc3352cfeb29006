// The approval bridge's page: WebAuthn ceremonies in the browser, decisions to the server.
"use strict";

const $ = (id) => document.getElementById(id);

function b64urlToBuf(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
}

function bufToB64url(buf) {
  let bin = "";
  for (const b of new Uint8Array(buf)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function status(text, error) {
  const el = $("status");
  el.textContent = text;
  el.className = error ? "error" : "";
}

async function api(path, body) {
  const init = body === undefined
    ? { method: "GET", credentials: "same-origin" }
    : { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(path, init);
  const data = await res.json().catch(() => ({ error: "http_" + res.status }));
  if (!res.ok) throw Object.assign(new Error(data.error || "http_" + res.status), { status: res.status });
  return data;
}

function creationOptions(o) {
  return {
    ...o,
    challenge: b64urlToBuf(o.challenge),
    user: { ...o.user, id: b64urlToBuf(o.user.id) },
    excludeCredentials: (o.excludeCredentials || []).map((c) => ({ ...c, id: b64urlToBuf(c.id) })),
  };
}

function requestOptions(o) {
  return {
    ...o,
    challenge: b64urlToBuf(o.challenge),
    allowCredentials: (o.allowCredentials || []).map((c) => ({ ...c, id: b64urlToBuf(c.id) })),
  };
}

function credentialJSON(cred) {
  const r = cred.response;
  const response = { clientDataJSON: bufToB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = bufToB64url(r.attestationObject);
    response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
  } else {
    response.authenticatorData = bufToB64url(r.authenticatorData);
    response.signature = bufToB64url(r.signature);
    if (r.userHandle) response.userHandle = bufToB64url(r.userHandle);
  }
  return {
    id: cred.id,
    rawId: bufToB64url(cred.rawId),
    type: cred.type,
    response,
    authenticatorAttachment: cred.authenticatorAttachment || null,
    clientExtensionResults: cred.getClientExtensionResults(),
  };
}

// -- approving ------------------------------------------------------------------------
let refresh = null;

function field(dl, name, value) {
  if (!value) return;
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  dl.append(dt, dd);
}

function showPending(data) {
  $("signin-form").hidden = true;
  const who = $("signed-in");
  who.hidden = false;
  who.textContent = "Signed in as " + data.user + ".";
  const box = $("pending");
  box.replaceChildren();
  if (!data.pending.length) {
    const p = document.createElement("p");
    p.className = "hint";
    p.id = "nothing-pending";
    p.textContent = "No login is waiting for your approval.";
    box.append(p);
  }
  for (const a of data.pending) {
    const card = document.createElement("div");
    card.className = "approval";
    card.dataset.ticket = a.ticket;
    const h = document.createElement("strong");
    h.className = "who";
    h.textContent = a.user + " is logging in";
    const dl = document.createElement("dl");
    field(dl, "Gateway", [a.gateway, a.nas_identifier, a.nas_address].filter(Boolean).join(" · "));
    field(dl, "From device", a.device);
    field(dl, "Service", a.called_station);
    field(dl, "When", new Date(a.created_epoch * 1000).toLocaleString() + " (" + a.created + ")");
    field(dl, "Waits", a.seconds_left + " s more");
    const approve = document.createElement("button");
    approve.className = "approve";
    approve.textContent = "Approve";
    approve.onclick = () => decide(a.ticket, "approve");
    const deny = document.createElement("button");
    deny.className = "deny";
    deny.textContent = "Deny";
    deny.onclick = () => decide(a.ticket, "deny");
    card.append(h, dl, approve, deny);
    box.append(card);
  }
}

async function loadPending() {
  try {
    showPending(await api("/api/pending"));
    return true;
  } catch (e) {
    if (e.status === 401) {
      $("signin-form").hidden = false;
      $("signed-in").hidden = true;
      $("pending").replaceChildren();
      if (refresh) clearInterval(refresh);
      refresh = null;
      return false;
    }
    status("Could not load pending logins: " + e.message, true);
    return false;
  }
}

async function signIn(event) {
  event.preventDefault();
  const user = $("signin-user").value.trim();
  try {
    status("Touch your security key…");
    const begin = await api("/api/signin/begin", user ? { user } : {});
    const cred = await navigator.credentials.get({ publicKey: requestOptions(begin.options) });
    const data = await api("/api/signin/finish", { credential: credentialJSON(cred) });
    status("");
    showPending(data);
    if (!refresh) refresh = setInterval(loadPending, 2000);
  } catch (e) {
    status("Sign-in failed: " + e.message, true);
  }
}

async function decide(ticket, decision) {
  try {
    const out = await api("/api/decide", { ticket, decision });
    status(out.outcome === "approved" ? "Login approved." :
           out.outcome === "denied" ? "Login denied." : "Too late: the login expired.",
           out.outcome === "expired");
    await loadPending();
  } catch (e) {
    status("Could not record your decision: " + e.message, true);
  }
}

// -- enrolling ------------------------------------------------------------------------
async function enrollView() {
  $("enroll-view").hidden = false;
  const token = location.hash.slice(1);
  history.replaceState(null, "", "/enroll");  // keep the token out of history and screenshots
  if (!token) return status("This enrollment link is incomplete.", true);
  let begin;
  try {
    begin = await api("/api/enroll/begin", { token });
  } catch (e) {
    return status("This enrollment link is not valid (used, expired or mistyped).", true);
  }
  $("enroll-user").textContent = begin.user;
  const button = $("enroll");
  button.disabled = false;
  button.onclick = async () => {
    button.disabled = true;
    try {
      status("Touch your security key…");
      const fresh = await api("/api/enroll/begin", { token });
      const cred = await navigator.credentials.create({ publicKey: creationOptions(fresh.options) });
      const out = await api("/api/enroll/finish", { token, credential: credentialJSON(cred) });
      status("Security key registered for " + out.user + ". You can close this page.");
    } catch (e) {
      status("Registration failed: " + e.message, true);
      button.disabled = false;
    }
  };
  totpEnroll(token);
  yubikeyEnroll(token);
}

function yubikeyEnroll(token) {
  const button = $("yubikey-enroll");
  button.disabled = false;
  $("yubikey-form").onsubmit = async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    try {
      const out = await api("/api/enroll/yubikey", {
        token, otp: $("yubikey-otp").value.trim(), aes_key: $("yubikey-aes").value.trim(),
      });
      $("yubikey-form").hidden = true;
      status("YubiKey registered for " + out.user + ". You can close this page.");
    } catch (e) {
      status("The YubiKey was not registered (" + e.message + ").", true);
      button.disabled = false;
    }
  };
}

// An authenticator app from the same one-time link (eapkit/bridge/reenroll.py).
function totpEnroll(token) {
  const begin = $("totp-begin");
  begin.disabled = false;
  begin.onclick = async () => {
    try {
      const out = await api("/api/enroll/totp/begin", { token });
      const qr = $("totp-qr");
      qr.replaceChildren();
      if (out.svg) {
        const svg = new DOMParser().parseFromString(out.svg, "image/svg+xml").documentElement;
        qr.append(document.importNode(svg, true));
      }
      const uri = document.createElement("code");
      uri.textContent = out.uri;
      qr.append(uri);
      $("totp-form").hidden = false;
    } catch (e) {
      status("This enrollment link is not valid (used, expired or mistyped).", true);
    }
  };
  $("totp-form").onsubmit = async (ev) => {
    ev.preventDefault();
    try {
      const out = await api("/api/enroll/totp/finish", { token, code: $("totp-code").value.trim() });
      $("totp-form").hidden = true;
      $("totp-qr").replaceChildren();
      status("Authenticator app set up for " + out.user + ". You can close this page.");
    } catch (e) {
      status("That code did not match (" + e.message + "): try the next one.", true);
    }
  };
}

function main() {
  // A second link opened in a tab still on /enroll changes only the fragment, which
  // loads no page: load it, so that the new link is the one the page takes.
  window.addEventListener("hashchange", () => { if (location.hash.length > 1) location.reload(); });
  if (!window.PublicKeyCredential) {
    status("This browser cannot use security keys here (WebAuthn needs HTTPS or localhost).", true);
  }
  if (location.pathname === "/enroll") return enrollView();
  $("approve-view").hidden = false;
  $("signin-form").addEventListener("submit", signIn);
  loadPending().then((ok) => { if (ok && !refresh) refresh = setInterval(loadPending, 2000); });
}

main();
