@chaos @load
Feature: Under load, the API survives faults and loses no acknowledged write
  A load runs in the background on a fixed schedule, whatever the answers, so
  an outage shows as failed requests and not as a silent pause. What the API
  acknowledged must be in PostgreSQL afterwards, read back with SQL.

  @database
  Scenario: The API rides out a Postgres restart under load
    Given the stack is healthy
    And a steady load of 50 requests per second
    When postgres restarts
    Then the API recovers within 10 seconds
    And no acknowledged write is lost
    And every failed request is answered with 503

  @database @serial
  Scenario: The API rides out a Postgres crash under heavy load
    Given the stack is healthy
    And heavy load
    When postgres is killed
    Then the API recovers within 10 seconds
    And no acknowledged write is lost
    And every failed request is answered with 503

  @database
  Scenario: The API rides out Postgres being down for a few seconds
    Given the stack is healthy
    And a steady load of 50 requests per second
    When postgres is down for 3 seconds
    Then the API recovers within 5 seconds
    And no request takes longer than 4 seconds
    And no acknowledged write is lost

  @database
  Scenario: A frozen Postgres never makes a request hang
    Given the stack is healthy
    And a steady load of 50 requests per second
    When postgres is paused for 2 seconds
    Then no request takes longer than 4 seconds
    And the API recovers within 3 seconds
    And no acknowledged write is lost

  @database
  Scenario: A Postgres frozen for longer than the request timeout gives 503s, never a hang
    Given the stack is healthy
    And a steady load of 50 requests per second
    When postgres is paused for 5 seconds
    Then no request takes longer than 4 seconds
    And every failed request is answered with 503
    And the API recovers within 3 seconds
    And no acknowledged write is lost

  @recovery @serial
  Scenario: A killed API comes back under load
    Given the stack is healthy
    And a steady load of 50 requests per second
    When api is killed
    Then the API recovers within 5 seconds
    And no acknowledged write is lost

  @recovery @serial
  Scenario: An API restart under load loses nothing
    Given the stack is healthy
    And a steady load of 50 requests per second
    When api restarts
    Then the API recovers within 5 seconds
    And no acknowledged write is lost

  @recovery @database @serial
  Scenario: Chaos with load: a random service is killed mid-run
    Given the stack is healthy
    And heavy load
    When a random service is killed
    Then the API recovers within 10 seconds
    And no acknowledged write is lost
