@serial
Feature: The primary is cut off from the cluster while the API still reaches it
  A network partition through the suite's fault proxy: the primary loses etcd and the other nodes
  (replication, Patroni's REST API), while HAProxy still routes the API's writes to it. As Patroni
  promises, a primary that cannot renew its leader key steps down within retry_timeout, and a
  replica takes over once the key expires (ttl). The watch samples every node over the suite's own direct
  connections, so the cut does not blind it. Run with: behave -D stack_file=stack/ha/stack.toml --tags=@ha

  @ha @partition
  Scenario: The primary is cut off: never two writers, and synchronous replication loses nothing it acknowledged
    Given the stack is healthy
    And steady load
    When the primary is cut off from the cluster for 25 seconds
    Then a new primary is elected within 20 seconds
    And at most one node accepts writes at any time
    And no write acknowledged by the cut-off primary is lost
    And the API recovers within 30 seconds
    And no acknowledged write is lost
    And the old primary rejoins as a replica within 40 seconds

  @ha_async @expect_loss @partition
  Scenario: With asynchronous replication the cut-off primary's acknowledged writes are lost, and each is reported
    Run with: behave -D stack_file=stack/ha/async.toml --tags=@expect_loss
    Given the stack is healthy
    And steady load
    When the primary is cut off from the cluster for 25 seconds
    Then a new primary is elected within 20 seconds
    And writes acknowledged by the cut-off primary are lost and each is reported
    And at most one node accepts writes at any time
