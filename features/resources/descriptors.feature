@catalog @resources @serial
Feature: A service out of file descriptors refuses new clients with 503 and does not crash
  A process at its descriptor limit can still serve the connections it holds,
  but it cannot accept a new client nor open a new database connection. The
  API must answer a new client it cannot serve with a fast 503 (a descriptor
  kept in reserve lets it accept one and refuse it) instead of leaving it
  waiting or resetting it, answer a request that needs a database connection
  it cannot open with 503, keep running, and serve again once descriptors are
  back. The load keeps its connections alive, so the new clients are the
  step's own: one every 0.25 s, each waiting at most 2 s.

  Scenario: Out of descriptors the API answers new clients 503 and serves again afterwards
    Given the stack is healthy
    And a steady load of 20 requests per second
    When all database connections of the api are terminated
    And api cannot open more than 16 files for 4 seconds while new clients connect
    Then every failed request is answered with 503
    And every new client is served or answered with 503
    And the API recovers within 2 seconds
    And no acknowledged write is lost
