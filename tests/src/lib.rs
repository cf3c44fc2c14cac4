//! Helpers shared by the end-to-end tests: locating the `gregor` binary,
//! picking free loopback ports, starting and stopping broker processes.
