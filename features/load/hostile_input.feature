@catalog @load
Feature: Hostile input under load
  Clients send bodies that are not JSON, JSON of the wrong shape, bodies far too
  large and heads that trickle in byte by byte. The API must refuse each with a
  4xx, never fail with a 5xx, and the well-formed requests sent beside them must
  keep their error rate and their latency.

  Scenario: Malformed requests are refused with a 4xx and the well-formed ones are served as before
    Given the stack is healthy
    And 20% of the load is malformed
    And a steady load of 30 requests per second
    When the load runs for 3 seconds
    Then every malformed request is refused with a 4xx
    And the well-formed requests keep an error rate below 1%
    And the well-formed requests keep their latency
    And no acknowledged write is lost
