@chaos @database
Feature: PostgreSQL misbehaving from the inside gives fast 503s, never hanging requests
  Faults made through PostgreSQL itself, under a steady load: the API's sessions
  killed, every connection slot taken, a table locked, the database read-only,
  every statement slow. The API must answer within its own timeouts (a 503 when
  it cannot serve, never a hang), serve again by itself once the fault is gone,
  and lose nothing it acknowledged.

  Scenario: Terminated database sessions are replaced without failing a later request
    Given the stack is healthy
    And a steady load of 50 requests per second
    When all database connections of the api are terminated
    Then the API recovers within 1 second
    And every request started after the fault succeeds
    And every failed request is answered with 503
    And no acknowledged write is lost

  Scenario: With no connection slot to spare, the API serves on with the connections it holds
    Given the stack is healthy
    And a steady load of 50 requests per second
    When postgres runs out of connection slots for 3 seconds
    Then the error rate stays below 1%
    And the API answers within 2 seconds while the fault lasts
    And no acknowledged write is lost

  Scenario: A lock timeout while no connection slot is free does not cost the API its connections
    Given the stack is healthy
    And a steady load of 50 requests per second
    And postgres has no connection slot left
    When the users table is locked for 2 seconds
    Then the API recovers within 1 second
    And every failed request is answered with 503
    And no acknowledged write is lost

  Scenario: A locked table gives 503s within the request timeout
    Given the stack is healthy
    And a steady load of 50 requests per second
    When the users table is locked for 4 seconds
    Then the API answers within 3.5 seconds while the fault lasts
    And every failed request is answered with 503
    And the API recovers within 2 seconds
    And no acknowledged write is lost

  Scenario: A read-only database refuses writes with 503 and keeps serving reads
    Given the stack is healthy
    And a steady load of 50 requests per second
    When the database is read-only for 3 seconds
    Then writes fail with 503 while reads keep working
    And the API answers within 2 seconds while the fault lasts
    And the API recovers within 1 second
    And no acknowledged write is lost

  Scenario: Slightly slow statements slow the API down without breaking it
    Given the stack is healthy
    And a steady load of 50 requests per second
    When every statement of the api is slowed by 20 ms for 3 seconds
    Then the error rate stays below 1%
    And the API answers within 2 seconds while the fault lasts
    And no acknowledged write is lost

  Scenario: Statements slower than the statement timeout give 503s, not hanging requests
    Given the stack is healthy
    And a steady load of 50 requests per second
    When every statement of the api is slowed by 2 seconds for 3 seconds
    Then the API answers within 3.5 seconds while the fault lasts
    And every failed request is answered with 503
    And the API recovers within 2 seconds
    And no acknowledged write is lost
