@chaos @database
Feature: The API rides out PostgreSQL restarts and outages
  Connections a pool holds die with the server. The API must notice before it
  uses one, tell the truth on its health endpoint while the database is gone,
  and serve again by itself when it is back.

  Scenario: The first request after a Postgres restart succeeds
    Given the stack is healthy
    And 3 users exist
    When postgres restarts
    Then the next request succeeds
    And the health endpoint reports healthy within 5 seconds
    And the 3 users still exist

  Scenario: Health tells the truth while Postgres is stopped
    Given the stack is healthy
    And 2 users exist
    When postgres is stopped
    Then the health endpoint reports the database as unreachable within 2 seconds
    When postgres is started
    Then the health endpoint reports healthy within 5 seconds
    And the next request succeeds


  @serial
  Scenario: An API started while Postgres is down answers 503 until it is back
    Given the stack is healthy
    And 2 users exist
    When postgres is stopped
    And api is killed
    Then the health endpoint reports the database as unreachable within 5 seconds
    When postgres is started
    Then the health endpoint reports healthy within 5 seconds
    And the 2 users still exist
