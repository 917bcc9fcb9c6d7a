#include <revdesk/store/memory_store.hpp>

#define BOOST_TEST_MODULE memory_store
#include <boost/test/unit_test.hpp>

struct store_fixture {
    revdesk::memory_store store;

    revdesk::store& db() { return store; }
};

#include "store_suite.hpp"
