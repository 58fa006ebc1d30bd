//! Test kit: starts or reuses the test cluster and loopback git servers, and builds git fixtures.
