//! The edge proxy against real loopback listeners: backends written here (hyper and raw
//! sockets), the proxy's own listeners and control socket. Every wait is bounded.

mod control;
mod forward;
mod support;
mod switch;
mod websocket;
