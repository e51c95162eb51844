@chaos @recovery
Feature: The API comes back from restarts and crashes with its data
  The API keeps no state of its own: whatever happens to its process, what it
  acknowledged is in PostgreSQL and it serves it again once it is back.

  Scenario: Data survives an API restart
    Given the stack is healthy
    And 5 users exist
    When api restarts
    Then the health endpoint reports healthy within 5 seconds
    And the 5 users still exist

  Scenario: A killed API comes back by itself
    Given the stack is healthy
    And 3 users exist
    When api is killed
    Then the health endpoint reports healthy within 10 seconds
    And the 3 users still exist
