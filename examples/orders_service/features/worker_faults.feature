@chaos @worker
Feature: The orders worker ships every acknowledged order, whatever happens to it
  The API acknowledges an order once it is stored; the worker ships it later,
  from a queue in PostgreSQL. A worker killed mid-job, or cut off from
  PostgreSQL, may delay an order but never lose it or ship it twice, and the
  API keeps taking orders meanwhile.

  Scenario: No acknowledged order is lost when the worker is killed mid-job
    Given the stack is healthy
    And a steady load of 30 requests per second
    When worker is killed
    Then no acknowledged write is lost
    And every acknowledged write is processed within 10 seconds

  Scenario: The API keeps taking orders while the worker is cut off from PostgreSQL
    Given the stack is healthy
    And a steady load of 30 requests per second
    When the network between worker and postgres is cut for 3 seconds
    Then the error rate stays below 1%
    And no acknowledged write is lost
    And every acknowledged write is processed within 5 seconds

  Scenario: Orders survive a worker restart under load and are each shipped once
    Given the stack is healthy
    And 3 orders exist
    And a steady load of 30 requests per second
    When worker restarts
    Then the 3 orders still exist
    And no acknowledged write is lost
    And every acknowledged write is processed within 10 seconds
