// Package envdapi holds the facts of envd's API that envd and its callers
// (the host agent, the sandbox proxy) share: the port envd serves on in
// every sandbox and the protocol level it implements. It imports nothing,
// so any binary can depend on it.
package envdapi

// Port is envd's port inside every sandbox.
const Port = 49983

// Version is the E2B envd protocol level envd implements; envd states it
// in the VersionHeader of its /init answer, and the agent reports that
// answer. The E2B SDKs gate features on it (every gate they have is at or
// below 0.6.4).
const Version = "0.6.13"

// VersionHeader carries Version on envd's answers to /init.
const VersionHeader = "X-Envd-Version"

// ReplayHeader on a Connect to a terminal process (value "1") asks envd to
// send the terminal's latest output (up to 64 KiB, from a line start)
// before what follows, so that a client attaching again sees the screen it
// lost. E2B's clients do not send it and see no difference.
const ReplayHeader = "Wrenn-Replay-Output"
