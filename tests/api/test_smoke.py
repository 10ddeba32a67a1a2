async def test_me(client, alice):
    r = await client.get("/v1/me", params=alice.params)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["email"] == "alice@example.com"
    r = await client.put("/v1/users", params=alice.params)
    print(r.status_code, r.text, r.headers)
    r = await client.put("/v1/users/1", params=alice.params)
    print(r.status_code, r.text, r.headers)
    r = await client.get("/v1/nope", params=alice.params)
    print(r.status_code, r.text, r.headers)
    assert 0
