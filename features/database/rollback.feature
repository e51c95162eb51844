@chaos @database
Feature: A failed write leaves nothing behind

  Scenario: A refused write leaves no partial row
    Given the stack is healthy
    And 3 users exist
    When a user is created with an email that is already taken
    Then the write is refused with 409
    And exactly 3 users are stored
    And the 3 users still exist
