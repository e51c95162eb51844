@catalog @network
Feature: HTTP faults between the load and the API
  The load reaches the API through an HTTP link the suite controls, so a share of
  its requests can be refused, answered with an error, cut off or delayed on the
  way, as a gateway, a rate limiter or a flaky network in front of a service
  would (Chaos Mesh HTTPChaos's abort, delay and replace). The API never sees a
  request the link refused or cut off; what the load was told must match what
  PostgreSQL holds, and the API must serve every request once the fault is gone.

  Scenario: Requests a rate limiter refuses with 429 are not stored, and the API serves on
    Given the stack is healthy
    And a steady load of 40 requests per second
    When 30% of requests from load to api get 429 with Retry-After 1 for 2 seconds
    Then no acknowledged write is lost
    And every request started after the fault succeeds

  Scenario: Answers of 500 in front of the API end with the fault
    Given the stack is healthy
    And a steady load of 40 requests per second
    When 20% of requests from load to api get 500 for 2 seconds
    Then the API recovers within 1 second
    And every request started after the fault succeeds
    And no acknowledged write is lost

  Scenario: Requests cut off on the way lose no acknowledged write
    Given the stack is healthy
    And a steady load of 40 requests per second
    When 20% of requests from load to api are aborted for 2 seconds
    Then no acknowledged write is lost
    And every request started after the fault succeeds

  Scenario: Requests delayed on the way are all answered, late but in time
    Given the stack is healthy
    And a steady load of 30 requests per second
    When requests from load to api are delayed by 300 ms for 2 seconds
    Then the API answers within 1 second while the fault lasts
    And the error rate stays below 1%
