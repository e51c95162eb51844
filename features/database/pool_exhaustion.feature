@chaos @database
Feature: More slow requests than the pool holds are refused fast, not queued forever
  The API has a small bounded pool. When the database is slow, requests beyond
  what the pool holds must get a 503 within the pool timeout, and the API must
  serve normally once the database is fast again.

  Scenario: Pool exhaustion answers 503 fast and the API serves normally afterwards
    Given the stack is healthy
    And 20 concurrent users
    When the users table is locked for 3 seconds
    Then every failed request is answered with 503
    And no request takes longer than 3 seconds
    And the API recovers within 2 seconds
    And no acknowledged write is lost
