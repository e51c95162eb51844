@chaos @recovery
Feature: The whole stack restarts without losing state

  Scenario: Data survives a restart of the whole stack
    Given the stack is healthy
    And 5 users exist
    When the whole stack restarts
    Then the health endpoint reports healthy within 10 seconds
    And the 5 users still exist

  Scenario: State persists across one restart after another
    Given the stack is healthy
    And 10 users exist
    When postgres restarts
    And api restarts
    And the whole stack restarts
    And postgres restarts immediately
    Then the health endpoint reports healthy within 10 seconds
    And the 10 users still exist
