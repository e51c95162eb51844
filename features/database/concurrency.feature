@catalog @database
Feature: Concurrent transactions: deadlocks, serialization failures, held rows and cancelled statements give 503s, never 500s
  Under a light load, the API's transactions meet other transactions: its
  writes deadlock with a session that takes the same locks in the other order,
  or run serializable and fail to serialize against a concurrent writer, an
  idle transaction holds the rows it reads, its running statements are
  cancelled. A transaction PostgreSQL aborted is the client's to retry: the API
  must answer it 503 (never a 500), serve again at once, and lose nothing it
  acknowledged.

  Scenario: Writes that deadlock are answered 503 and nothing acknowledged is lost
    Given the stack is healthy
    And a steady load of 30 requests per second
    When two sessions deadlock on the users table for 2 seconds
    Then every failed request is answered with 503
    And the API recovers within 2 seconds
    And no acknowledged write is lost

  Scenario: A single deadlock is answered 503 and the API serves on at once
    Given the stack is healthy
    And a steady load of 30 requests per second
    When two sessions deadlock on the users table
    Then every failed request is answered with 503
    And the API recovers within 1 second

  Scenario: Writes that fail to serialize are answered 503 and nothing acknowledged is lost
    Given the stack is healthy
    And a steady load of 30 requests per second
    When writes to the users table meet serialization failures for 2 seconds
    Then every failed request is answered with 503
    And the API recovers within 2 seconds
    And no acknowledged write is lost

  Scenario: Rows held by an idle transaction do not stall the API's reads and new writes
    Given the stack is healthy
    And 3 users exist
    And a steady load of 30 requests per second
    When a transaction holds rows of the users table for 2 seconds
    Then the error rate stays below 1%
    And the API answers within 1 second while the fault lasts
    And the 3 users still exist
    And no acknowledged write is lost

  Scenario: Cancelled statements are answered 503 and the API serves on
    Given the stack is healthy
    And a steady load of 30 requests per second
    When the running statements of the api are cancelled for 2 seconds
    Then every failed request is answered with 503
    And the API recovers within 1 second
    And no acknowledged write is lost
