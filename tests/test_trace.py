from cotscope.trace import join_steps, make_steps, split_steps


def test_split_at_lines_and_sentences():
    text = "First we add 2 and 3. That gives 5.\n\nThen double it: 10.\n"
    assert split_steps(text) == ["First we add 2 and 3.", "That gives 5.", "Then double it: 10."]


def test_decimal_points_and_lowercase_do_not_split():
    assert split_steps("It costs 3.5 dollars. e.g. this stays.") == ["It costs 3.5 dollars. e.g. this stays."]


def test_list_markers_join_the_following_sentence():
    assert split_steps("1. Ben has 2. 2. He gets 6. 3. So 8.") == ["1. Ben has 2.", "2. He gets 6.", "3. So 8."]


def test_join_round_trips_up_to_whitespace():
    text = "A is 1. B is 2.\nC is 3."
    steps = make_steps(text, lambda s: len(s.split()))
    assert " ".join(join_steps(steps).split()) == " ".join(text.split())
    assert [s.n_tokens for s in steps] == [3, 3, 3]


def test_empty_text_has_no_steps():
    assert split_steps("") == [] and split_steps("\n \n") == []
