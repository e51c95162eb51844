@chaos @network
Feature: The API rides out a bad network between it and PostgreSQL
  The API reaches PostgreSQL through a link the suite controls. A slow link
  must slow the API down, not break it; a cut link must give fast 503s, never
  hanging requests; once the link is back, the API must serve again by itself.

  Scenario: A slow link slows the API down but breaks nothing
    Given the stack is healthy
    And a steady load of 30 requests per second
    When the network between api and postgres adds 20 ms of latency for 3 seconds
    Then the error rate stays below 1%
    And no acknowledged write is lost

  Scenario: A cut link gives fast 503s and the API recovers when it is back
    Given the stack is healthy
    And a steady load of 50 requests per second
    When the network between api and postgres is cut for 3 seconds
    Then no request takes longer than 4 seconds
    And every failed request is answered with 503
    And the API recovers within 2 seconds
    And no acknowledged write is lost

  Scenario: Reset connections are replaced without failing requests for long
    Given the stack is healthy
    And a steady load of 50 requests per second
    When connections between api and postgres are reset
    Then the API recovers within 1 second
    And every failed request is answered with 503
    And no acknowledged write is lost
