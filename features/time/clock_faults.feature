Feature: The API's own clock jumps or drifts
  A machine's wall clock is not steady: NTP steps it, a resumed VM finds it hours behind, an operator
  sets it by hand. Timers and lifetimes must not move with it: a session lives its lifetime of elapsed
  time whatever the date says. The clock of one service is moved through libfaketime, live.

  @catalog @time
  Scenario: Sessions outlive a jump of the API's clock
    Given the stack is healthy
    And a client has signed in
    And a steady load of 20 requests per second
    When the clock of api jumps 7200 seconds ahead
    Then the client's session is still valid
    And the error rate stays below 1%

  @catalog @time
  Scenario: Sessions outlive a skew of the API's clock
    Given the stack is healthy
    And a client has signed in
    When the clock of api is skewed by 7200 seconds for 2 seconds
    Then the client's session is still valid
    And the health endpoint reports healthy within 2 seconds
