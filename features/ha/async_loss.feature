@ha_async @expect_loss @serial
Feature: Asynchronous replication loses acknowledged writes on failover
  The same cluster with asynchronous replication: a commit is acknowledged before any replica
  has it, so a primary that dies with its replicas behind takes those writes with it. This
  scenario documents the risk: it expects the loss and lists each lost write.
  Run with: behave -D stack_file=stack/ha/async.toml --tags=@expect_loss

  Scenario: The primary dies with its replicas behind and the writes only it had are reported lost
    Given the stack is healthy
    And steady load
    When the primary is killed while its replicas are 3 seconds behind
    Then a new primary is elected within 20 seconds
    And acknowledged writes are lost in the failover and each is reported
    And at most one node accepts writes at any time
